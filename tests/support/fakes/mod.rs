//! Local servers that speak the providers' protocols (from fixture streams written to match
//! the vendors' documented formats), with controllable delays and faults.

pub mod deepgram_stt;
pub mod openai_llm;
pub mod openai_stt;
pub mod tts_deepgram;
pub mod tts_elevenlabs;
pub mod tts_openai;
pub mod twilio;
