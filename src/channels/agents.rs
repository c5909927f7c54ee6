//! Which agent answers a text: the number's stored agent for SMS, the chat token's agent
//! for web chat, else the config file's; the same runtimes calls use (one per version of an
//! agent's settings).

use std::sync::Arc;

use crate::agent::profile::{AgentProfile, AgentRuntimes};
use crate::agent::session::AgentRuntime;
use crate::store::Store;

pub struct TextAgents {
    store: Store,
    /// The config file's AI agent; None when calls are not answered by an AI agent (then
    /// nobody answers texts either).
    base: Option<Arc<AgentRuntime>>,
    runtimes: Arc<AgentRuntimes>,
}

impl TextAgents {
    pub fn new(
        store: Store,
        base: Option<Arc<AgentRuntime>>,
        runtimes: Arc<AgentRuntimes>,
    ) -> TextAgents {
        TextAgents {
            store,
            base,
            runtimes,
        }
    }

    /// The agent of `number` (one of an account's numbers).
    pub async fn for_number(&self, number: &str) -> Option<Arc<AgentRuntime>> {
        let base = self.base.as_ref()?;
        match self.store.route(Some(number), None, Some(false)).await {
            Ok(Some(route)) => Some(self.runtime(base, route.agent_id.as_deref(), route.agent)),
            Ok(None) => Some(base.clone()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the number's agent; the default answers");
                Some(base.clone())
            }
        }
    }

    /// Agent `agent_id` of `account_id` (None: the default).
    pub async fn for_agent(
        &self,
        account_id: &str,
        agent_id: Option<&str>,
    ) -> Option<Arc<AgentRuntime>> {
        let base = self.base.as_ref()?;
        let Some(id) = agent_id else {
            return Some(base.clone());
        };
        match self.store.agent(account_id, id).await {
            Ok(agent) => Some(self.runtime(base, Some(id), Some((agent.config, agent.updated_at)))),
            Err(e) => {
                tracing::warn!(error = %e, agent = id, "cannot read the agent; the default answers");
                Some(base.clone())
            }
        }
    }

    fn runtime(
        &self,
        base: &Arc<AgentRuntime>,
        id: Option<&str>,
        stored: Option<(serde_json::Value, i64)>,
    ) -> Arc<AgentRuntime> {
        match (id, stored) {
            (Some(id), Some((settings, version))) => {
                let profile = AgentProfile::from_stored(&settings);
                self.runtimes.get(base, id, version, &profile)
            }
            _ => base.clone(),
        }
    }
}
