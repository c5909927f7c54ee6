// Parley's ops page: live calls (GET /v1/calls, every 2 s), recent call records (GET
// /v1/cdrs) and the selected call's turns as a latency waterfall (GET /v1/cdrs/{id}).
//
// The API key comes from the form (kept in localStorage) or from the URL fragment
// (#key=pk_…&call=<id>&account=<acc>); the fragment never reaches the server, and the key
// is taken out of the address bar once read. Every value from the API goes into the page
// as text (textContent / append of strings), never as markup.
'use strict';

(() => {
  const KEY_ITEM = 'parley.ops.key';
  const ACCOUNT_ITEM = 'parley.ops.account';
  const REFRESH_MS = 2000;
  // Recent records are re-read every this many live refreshes (and whenever a call ends).
  const CDR_EVERY = 5;
  const PAGE = 25;

  // The waterfall's stages, in the order they happen in a turn.
  const STAGES = {
    stt: { label: 'STT', what: 'end of speech → final transcript' },
    turn: { label: 'Turn', what: 'final transcript → end of turn and LLM request' },
    llm: { label: 'LLM', what: 'request → first sentence' },
    tts: { label: 'TTS', what: 'first sentence → first audio' },
    playout: { label: 'Playout', what: 'first audio → first packet on the network' },
    total: { label: 'Voice to voice', what: 'end of speech → first packet of the reply' },
  };

  const $ = (id) => document.getElementById(id);

  const state = {
    key: '',
    account: '',
    selected: '',
    live: [],
    cdrs: [],
    // Cursors of the pages walked so far; the last is the page shown (null: the newest).
    pages: [null],
    next: null,
    // The selected call's record, once found.
    detail: null,
    ticks: 0,
    timer: null,
    running: false,
    again: false,
  };

  // --- small helpers ----------------------------------------------------------------------

  /** An element with attributes and children (strings become text nodes). */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'class') e.className = value;
      else e.setAttribute(name, value === true ? '' : String(value));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  const num = (v) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : null);
  const dash = (v) => (v === null || v === undefined || v === '' ? '—' : String(v));
  const ms = (v) => `${Math.round(v)} ms`;

  function when(rfc3339) {
    if (!rfc3339) return el('span', {}, '—');
    const d = new Date(rfc3339);
    return el('time', { datetime: rfc3339, title: rfc3339 },
      Number.isNaN(d.getTime()) ? rfc3339 : d.toLocaleString());
  }

  function seconds(msValue) {
    const v = num(msValue);
    return v === null ? '—' : `${(v / 1000).toFixed(1)} s`;
  }

  function setStatus(text, isError) {
    const s = $('status');
    s.textContent = text;
    s.classList.toggle('error', Boolean(isError));
  }

  function withParams(path, params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
    const qs = q.toString();
    return qs ? `${path}?${qs}` : path;
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path) {
    const res = await fetch(path, {
      headers: { Authorization: `Bearer ${state.key}`, Accept: 'application/json' },
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
    });
    let body = null;
    try {
      body = await res.json();
    } catch (_) {
      body = null;
    }
    if (!res.ok) {
      const detail = body && body.error && body.error.message ? body.error.message : res.statusText;
      throw new ApiError(res.status, `${path.split('?')[0]}: HTTP ${res.status} ${detail}`);
    }
    return body;
  }

  // --- the key and the fragment -----------------------------------------------------------

  function save() {
    try {
      if (state.key) localStorage.setItem(KEY_ITEM, state.key);
      else localStorage.removeItem(KEY_ITEM);
      if (state.account) localStorage.setItem(ACCOUNT_ITEM, state.account);
      else localStorage.removeItem(ACCOUNT_ITEM);
    } catch (_) {
      // Storage may be off (private mode): the key then lasts as long as the page.
    }
  }

  function load() {
    try {
      state.key = localStorage.getItem(KEY_ITEM) || '';
      state.account = localStorage.getItem(ACCOUNT_ITEM) || '';
    } catch (_) {
      state.key = '';
    }
  }

  /** Reads #key=…&account=…&call=…; takes the key out of the address bar and history. */
  function readFragment() {
    const params = new URLSearchParams(location.hash.slice(1));
    const key = params.get('key');
    if (key !== null) {
      state.key = key.trim();
      params.delete('key');
      const rest = params.toString();
      history.replaceState(null, '', rest ? `#${rest}` : location.pathname + location.search);
    }
    const account = params.get('account');
    if (account !== null) state.account = account.trim();
    if (key !== null || account !== null) save();
    const call = params.get('call') || '';
    if (call !== state.selected) {
      state.selected = call;
      state.detail = null;
    }
  }

  function select(id) {
    const params = new URLSearchParams(location.hash.slice(1));
    params.set('call', id);
    location.hash = params.toString(); // → hashchange → readFragment
  }

  // --- live calls -------------------------------------------------------------------------

  function callButton(id) {
    return el('button', { type: 'button', class: 'link', 'data-select': id,
      'aria-label': `Show call ${id}` }, el('code', {}, id));
  }

  function renderLive() {
    const body = $('live-calls').tBodies[0];
    body.replaceChildren(...state.live.map((c) => el('tr', {
      'data-call-id': c.id,
      class: c.id === state.selected ? 'selected' : null,
      'aria-current': c.id === state.selected ? 'true' : null,
    },
    el('td', {}, callButton(c.id)),
    el('td', { class: 'uri', title: c.from_uri }, dash(c.from_uri)),
    el('td', { class: 'uri', title: c.to_uri }, dash(c.to_uri)),
    el('td', {}, dash(c.number)),
    el('td', {}, dash(c.state)),
    el('td', {}, when(c.started_at)),
    el('td', {}, when(c.answered_at)))));
    $('live-empty').hidden = state.live.length > 0;
  }

  // --- recent call records ----------------------------------------------------------------

  function slowest(turns) {
    const v = (Array.isArray(turns) ? turns : []).map((t) => num(t && t.voice_to_voice_ms))
      .filter((x) => x !== null);
    return v.length ? ms(Math.max(...v)) : '—';
  }

  function renderCdrs() {
    const body = $('cdrs').tBodies[0];
    body.replaceChildren(...state.cdrs.map((c) => el('tr', {
      'data-call-id': c.id,
      class: c.id === state.selected ? 'selected' : null,
      'aria-current': c.id === state.selected ? 'true' : null,
    },
    el('td', {}, callButton(c.id)),
    el('td', { class: 'uri', title: c.from_uri }, dash(c.from_uri)),
    el('td', { class: 'uri', title: c.to_uri }, dash(c.to_uri)),
    el('td', {}, when(c.started_at)),
    el('td', { class: 'num' }, seconds(c.duration_ms)),
    el('td', {}, `${dash(c.hangup_side)} (${dash(c.hangup_cause)})`),
    el('td', { class: 'num' }, dash(c.final_code)),
    el('td', { class: 'num' }, num(c.mos) === null ? '—' : c.mos.toFixed(2)),
    el('td', { class: 'num' }, Array.isArray(c.turns) ? c.turns.length : 0),
    el('td', { class: 'num' }, slowest(c.turns)))));
    $('cdrs-empty').hidden = state.cdrs.length > 0;
    $('cdrs-newest').disabled = state.pages.length <= 1;
    $('cdrs-older').disabled = !state.next;
  }

  async function loadCdrs() {
    const cursor = state.pages[state.pages.length - 1];
    const page = await api(withParams('/v1/cdrs', {
      limit: String(PAGE), cursor, account_id: state.account,
    }));
    state.cdrs = Array.isArray(page.data) ? page.data : [];
    state.next = page.next_cursor || null;
    renderCdrs();
  }

  // --- the selected call ------------------------------------------------------------------

  /**
   * A turn's stages laid out in time from the end of the caller's speech (ms). The LLM
   * request's start is not a stage of its own: it is what voice-to-voice leaves once the
   * later stages are taken out (else the end-of-turn decision).
   */
  function layout(turn) {
    const t = turn || {};
    const stt = num(t.stt_final_ms);
    const endpointing = num(t.endpointing_ms);
    const token = num(t.llm_first_token_ms);
    const sentence = num(t.first_sentence_ms);
    const tts = num(t.tts_first_audio_ms);
    const playout = num(t.playout_start_ms);
    const v2v = num(t.voice_to_voice_ms);
    const llm = token === null && sentence === null ? null : (token || 0) + (sentence || 0);
    const later = (llm || 0) + (tts || 0) + (playout || 0);
    let llmAt;
    if (v2v !== null && llm !== null) llmAt = Math.max(0, v2v - later);
    else if (endpointing !== null) llmAt = endpointing;
    else llmAt = stt || 0;
    const segs = [];
    if (stt !== null) segs.push({ key: 'stt', start: 0, ms: stt });
    const from = stt || 0;
    if ((llm !== null || tts !== null) && llmAt > from) {
      segs.push({ key: 'turn', start: from, ms: llmAt - from });
    }
    let at = llmAt;
    if (llm !== null) {
      segs.push({ key: 'llm', start: at, ms: llm, note: token === null ? '' : `first token ${Math.round(token)}` });
      at += llm;
    }
    if (tts !== null) {
      segs.push({ key: 'tts', start: at, ms: tts });
      at += tts;
    }
    if (playout !== null) {
      segs.push({ key: 'playout', start: at, ms: playout });
      at += playout;
    }
    if (v2v !== null) segs.push({ key: 'total', start: 0, ms: v2v });
    const end = Math.max(0, ...segs.map((s) => s.start + s.ms));
    return { segs, v2v, end };
  }

  function waterfall(cdr) {
    const turns = (Array.isArray(cdr.turns) ? cdr.turns : []).map(layout);
    if (!turns.length) return el('p', { class: 'empty' }, 'This call has no turns.');
    // Every turn on one scale: the slowest turn spans the whole width.
    const scale = Math.max(1, ...turns.map((t) => t.end));
    const pct = (v) => `${((100 * v) / scale).toFixed(3)}%`;
    const table = el('table', { class: 'waterfall', 'data-scale-ms': Math.round(scale) },
      el('caption', {}, `Turn latency, ${turns.length} turn${turns.length === 1 ? '' : 's'}, `
        + `scaled to the slowest (${ms(scale)})`),
      el('thead', {}, el('tr', {},
        el('th', { scope: 'col' }, 'Stage'),
        el('th', { scope: 'col', class: 'track' }, el('div', { class: 'axis' },
          el('span', {}, '0'), el('span', {}, 'time after the caller stopped speaking'),
          el('span', {}, ms(scale)))),
        el('th', { scope: 'col', class: 'num' }, 'ms'))));
    turns.forEach((t, i) => {
      const group = el('tbody', { class: 'turn', 'data-turn': i + 1 },
        el('tr', {}, el('th', { scope: 'rowgroup', colspan: 3, class: 'turn-title' },
          `Turn ${i + 1}`, t.v2v === null ? '' : ` — voice to voice ${ms(t.v2v)}`)));
      for (const s of t.segs) {
        const stage = STAGES[s.key];
        const text = `${ms(s.ms)}${s.note ? ` (${s.note})` : ''}`;
        const bar = el('div', {
          class: `bar bar-${s.key}`,
          'data-stage': s.key,
          'data-ms': Math.round(s.ms),
          title: `${stage.label} ${text}: ${stage.what}, from ${ms(s.start)}`,
          role: 'img',
          'aria-label': `${stage.label} ${text}, starting at ${ms(s.start)}`,
        }, el('span', { class: 'bar-label' }, text));
        bar.style.left = pct(s.start);
        bar.style.width = pct(s.ms);
        group.append(el('tr', { class: `stage stage-${s.key}` },
          el('th', { scope: 'row' }, stage.label),
          el('td', { class: 'track' }, el('div', { class: 'lane' }, bar)),
          el('td', { class: 'num' }, Math.round(s.ms))));
      }
      table.append(group);
    });
    return table;
  }

  function known(id) {
    return state.live.find((c) => c.id === id) || state.cdrs.find((c) => c.id === id) || null;
  }

  function renderDetail(message) {
    const section = $('detail');
    section.hidden = !state.selected;
    if (!state.selected) return;
    $('detail-id').textContent = state.selected;
    const cdr = state.detail;
    if (!cdr) {
      $('detail-summary').textContent = message || 'Loading…';
      $('waterfall').replaceChildren();
      return;
    }
    const side = `${dash(cdr.hangup_side)} (${dash(cdr.hangup_cause)})`;
    $('detail-summary').textContent = [
      `From ${dash(cdr.from_uri)} to ${dash(cdr.to_uri)}`,
      `started ${cdr.started_at ? new Date(cdr.started_at).toLocaleString() : '—'}`,
      `${seconds(cdr.duration_ms)}`,
      `ended by ${side}`,
      `codec ${dash(cdr.codec)}`,
      `MOS ${num(cdr.mos) === null ? '—' : cdr.mos.toFixed(2)}`,
      `loss ${num(cdr.loss_percent) === null ? '—' : `${cdr.loss_percent.toFixed(1)} %`}`,
    ].join(' · ');
    $('waterfall').replaceChildren(waterfall(cdr));
  }

  async function loadDetail() {
    const id = state.selected;
    if (!id || (state.detail && state.detail.id === id)) return;
    const row = known(id);
    const account = (row && row.account_id) || state.account;
    try {
      const cdr = await api(withParams(`/v1/cdrs/${encodeURIComponent(id)}`, { account_id: account }));
      if (state.selected === id) state.detail = cdr;
      renderDetail();
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 404) throw e;
      // A call's record is written when it ends: keep asking on each refresh.
      const live = state.live.some((c) => c.id === id);
      renderDetail(live
        ? 'In progress: its turns are shown here once the call ends.'
        : 'No record of this call (yet).');
    }
  }

  // --- refreshing -------------------------------------------------------------------------

  async function refresh() {
    if (!state.key) {
      setStatus('Paste an API key to see calls.');
      renderDetail('Paste an API key to see this call.');
      return;
    }
    const before = new Set(state.live.map((c) => c.id));
    const live = await api(withParams('/v1/calls', { account_id: state.account }));
    state.live = Array.isArray(live.data) ? live.data : [];
    renderLive();
    $('live-updated').textContent = `(updated ${new Date().toLocaleTimeString()})`;
    const ended = [...before].some((id) => !state.live.some((c) => c.id === id));
    const onNewest = state.pages.length === 1;
    if (state.ticks === 0 || ((ended || state.ticks % CDR_EVERY === 0) && onNewest)) {
      await loadCdrs();
    }
    state.ticks += 1;
    await loadDetail();
    setStatus('');
  }

  /** Refreshes now (or right after the refresh in flight), then every REFRESH_MS. */
  async function tick() {
    clearTimeout(state.timer);
    if (state.running) {
      state.again = true;
      return;
    }
    state.running = true;
    try {
      await refresh();
    } catch (e) {
      const refused = e instanceof ApiError && e.status === 401;
      setStatus(refused ? 'The API key was refused: paste another.' : String(e.message || e), true);
    } finally {
      state.running = false;
    }
    if (state.again) {
      state.again = false;
      tick();
    } else if (state.key) {
      state.timer = setTimeout(tick, REFRESH_MS);
    }
  }

  function restart() {
    state.ticks = 0;
    state.pages = [null];
    state.detail = null;
    state.live = [];
    state.cdrs = [];
    renderLive();
    renderCdrs();
    tick();
  }

  // --- wiring -----------------------------------------------------------------------------

  function onSelectClick(event) {
    const button = event.target.closest('button[data-select]');
    if (button) select(button.getAttribute('data-select'));
  }

  $('live-calls').addEventListener('click', onSelectClick);
  $('cdrs').addEventListener('click', onSelectClick);

  $('key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const key = $('key').value.trim();
    if (key) state.key = key;
    state.account = $('account').value.trim();
    $('key').value = '';
    $('key').placeholder = state.key ? 'key in use (paste to change)' : 'pk_…';
    save();
    restart();
  });

  $('forget').addEventListener('click', () => {
    state.key = '';
    save();
    $('key').placeholder = 'pk_…';
    restart();
  });

  $('cdrs-older').addEventListener('click', () => {
    if (!state.next) return;
    state.pages.push(state.next);
    loadCdrs().catch((e) => setStatus(String(e.message || e), true));
  });

  $('cdrs-newest').addEventListener('click', () => {
    state.pages = [null];
    loadCdrs().catch((e) => setStatus(String(e.message || e), true));
  });

  window.addEventListener('hashchange', () => {
    const key = state.key;
    const account = state.account;
    readFragment();
    if (state.key !== key || state.account !== account) {
      restart();
      return;
    }
    renderLive();
    renderCdrs();
    renderDetail();
    tick();
  });

  load();
  readFragment();
  $('account').value = state.account;
  if (state.key) $('key').placeholder = 'key in use (paste to change)';
  renderLive();
  renderCdrs();
  renderDetail();
  tick();
})();
