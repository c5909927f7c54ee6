// Parley browser calls: a visitor talks to a business's AI agent over WebRTC.
//
// This one file is both the /call page's script (served at /call/call.js, loaded with
// data-mode="page") and the embeddable widget (served at /widget.js). Everything about the
// call itself (WHIP signalling, the peer connection, the microphone, mute, hang-up, the level
// meter, the remote audio) is shared; only where the controls live differs:
//
//   - page mode: the controls are built into the page's #parley-call element; the token comes
//     from the page's own address (?token=…); window.parleyTest is exposed for tests.
//   - widget mode: a floating call button and its panel inside a Shadow DOM (the site's CSS
//     does not reach in), appended to the business's page. The token comes from the script
//     tag's data-token, or from the business's backend at data-token-url (POST, answering
//     {"token": "…"}), fetched afresh for every call.
//
// Both expose window.ParleyCall = { start({token}), hangUp(), state, reason }.
//
// Signalling is WHIP (RFC 9725) against {origin of this script}/v1/webrtc/whip: OPTIONS for
// the ICE servers (Link headers), then one POST of the complete offer (Parley is ICE-lite and
// takes no trickled candidates, so gathering is awaited first), then DELETE of the resource
// (the Location of the 201) to hang up. Server text goes into the page as text, never markup.
'use strict';

(() => {
  const script = document.currentScript;
  const config = (script && script.dataset) || {};
  const MODE = config.mode === 'page' ? 'page' : 'widget';
  // Where this script came from is where Parley is, whichever site embeds it.
  const BASE = new URL(script && script.src ? script.src : window.location.href);
  const WHIP_URL = new URL('/v1/webrtc/whip', BASE).href;
  const CSS_URL = new URL('/call/call.css', BASE).href;

  if (MODE === 'widget' && window.ParleyCall) return; // the widget is on this page already

  // How long to wait for ICE gathering before sending what has been gathered (the server
  // takes no trickle), for the OPTIONS request, for the DELETE, and for the media to connect.
  const GATHER_CAP_MS = 1500;
  const OPTIONS_CAP_MS = 2000;
  const DELETE_CAP_MS = 3000;
  const CONNECT_CAP_MS = 15000;
  // The level meter and the speech marks: one tick every TICK_MS; audio "starts" when its
  // RMS reaches SPEECH_ON after silence and "ends" once it stayed under SPEECH_OFF for
  // SPEECH_HANG_MS (the end is stamped when the quiet began).
  const TICK_MS = 50;
  const STATS_MS = 250;
  const SPEECH_ON = 0.02;
  const SPEECH_OFF = 0.01;
  const SPEECH_HANG_MS = 400;

  const LABELS = {
    idle: 'Ready to call',
    'requesting-microphone': 'Asking for your microphone…',
    connecting: 'Connecting…',
    connected: 'Connected',
    ended: 'Call ended',
    failed: 'Call failed',
  };
  const ACTIVE = new Set(['requesting-microphone', 'connecting', 'connected']);

  // What a refused WHIP request means for the visitor, by status.
  const REFUSALS = {
    400: 'The call could not be set up.',
    401: 'The call link was refused: its token is invalid or has expired.',
    402: 'The business has no credit for calls right now.',
    403: 'This call link may not place calls.',
    404: 'Browser calls are not available here.',
    406: 'Your browser offered no Opus audio, which calls need.',
    429: 'The line is busy: too many calls are in progress. Try again in a moment.',
    503: 'Calls are unavailable right now. Try again later.',
  };

  class CallError extends Error {}

  // --- observation: events with timestamps, for tests and for voice-to-voice -------------

  const events = [];
  function record(type, detail) {
    events.push(Object.assign({ type, t: Date.now() }, detail || {}));
  }

  document.addEventListener('securitypolicyviolation', (e) => {
    record('csp-violation', { directive: e.violatedDirective, blocked: String(e.blockedURI) });
  });

  // --- the controls (the same markup in the page and in the widget's panel) --------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'class') e.className = value;
      else e.setAttribute(name, value === true ? '' : String(value));
    }
    for (const c of children) {
      if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function buildControls(root) {
    const ui = {
      state: el('p', { id: 'state', class: 'state', role: 'status', 'aria-live': 'polite',
        'data-state': 'idle' }, LABELS.idle),
      call: el('button', { type: 'button', id: 'call-button', class: 'call' }, 'Call'),
      mute: el('button', { type: 'button', id: 'mute-button', class: 'mute',
        'aria-pressed': 'false', disabled: true }, 'Mute'),
      hangUp: el('button', { type: 'button', id: 'hangup-button', class: 'hangup',
        disabled: true }, 'Hang up'),
      meter: el('meter', { id: 'mic-level', min: '0', max: '1', value: '0', low: '0.25',
        high: '0.9', optimum: '0.5' }),
      audio: el('audio', { id: 'remote-audio', autoplay: true, hidden: true }),
    };
    ui.audio.autoplay = true;
    const level = el('label', { class: 'level', for: 'mic-level' }, 'Your microphone');
    root.append(
      ui.state,
      el('div', { class: 'controls' }, ui.call, ui.mute, ui.hangUp),
      el('div', { class: 'meter' }, level, ui.meter),
      ui.audio,
    );
    return ui;
  }

  // --- the call ------------------------------------------------------------------------

  // The controls of this page or widget; set once mounted.
  let ui = null;
  // Where tokens come from: () => Promise<string>; set by the mode.
  let defaultToken = () => Promise.reject(new CallError('No call token.'));
  let canCall = () => true;

  const call = {
    state: 'idle',
    reason: null,
    run: 0, // bumped by every start and every end: stale async steps see they are stale
    token: null,
    resource: null, // the WHIP resource's URL (the 201's Location)
    id: null,
    mic: null,
    pc: null,
    audioCtx: null,
    micAnalyser: null,
    remoteAnalyser: null,
    post: null, // the POST's AbortController while it is in flight
    ticker: null,
    statsTimer: null,
    connectTimer: null,
    wasConnected: false,
    micEnergy: 0,
    remoteEnergy: 0,
    micStatsEnergy: null,
    remoteStatsEnergy: null,
    lastTick: 0,
  };

  function setState(next, reason) {
    call.state = next;
    call.reason = reason || null;
    record(next, reason ? { reason } : undefined);
    render();
  }

  function render() {
    if (!ui) return;
    const s = call.state;
    ui.state.dataset.state = s;
    ui.state.textContent = call.reason ? `${LABELS[s]}: ${call.reason}` : LABELS[s];
    const active = ACTIVE.has(s);
    ui.call.hidden = active;
    ui.call.disabled = active || !canCall();
    ui.call.textContent = s === 'ended' || s === 'failed' ? 'Call again' : 'Call';
    ui.hangUp.hidden = !active;
    ui.hangUp.disabled = !active;
    ui.mute.disabled = !active || !call.mic;
    const muted = Boolean(call.mic) && !micTrack().enabled;
    ui.mute.setAttribute('aria-pressed', String(muted));
    ui.mute.textContent = muted ? 'Unmute' : 'Mute';
    if (!active) ui.meter.value = 0;
    if (onRender) onRender(s);
  }
  let onRender = null;

  const micTrack = () => (call.mic ? call.mic.getAudioTracks()[0] : null);

  function setMuted(muted) {
    const track = micTrack();
    if (!track) return;
    track.enabled = !muted;
    record(muted ? 'muted' : 'unmuted');
    render();
  }

  function micError(e) {
    switch (e && e.name) {
      case 'NotAllowedError':
      case 'SecurityError':
        return 'Microphone permission was denied. Allow the microphone for this site and try again.';
      case 'NotFoundError':
      case 'OverconstrainedError':
        return 'No microphone was found.';
      case 'NotReadableError':
        return 'The microphone could not be opened (is another application using it?).';
      default:
        return `The microphone could not be opened: ${(e && e.message) || e}`;
    }
  }

  // The server's reason for refusing a WHIP request, with its status.
  async function refusal(res) {
    let text = '';
    try {
      text = await res.text();
    } catch (_) {
      text = '';
    }
    let message = '';
    try {
      const body = JSON.parse(text);
      if (body && typeof body.error === 'object' && body.error) message = body.error.message || '';
      else if (body && typeof body.error === 'string') message = body.error;
      if (!message && body) message = body.message || body.detail || '';
    } catch (_) {
      message = '';
    }
    if (!message) message = text.trim().replace(/\s+/g, ' ').slice(0, 300);
    const status = `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`;
    const what = REFUSALS[res.status] || 'The call was refused.';
    return `${what} (${status}${message ? `: ${message}` : ''})`;
  }

  // RFC 8288 Link header values ("<uri>; rel=\"ice-server\"; username=\"u\", <…>…") as
  // [{uri, params}]. Commas inside quotes or angle brackets do not split links.
  function parseLinks(header) {
    const s = header || '';
    const links = [];
    const space = (c) => c === ' ' || c === '\t';
    let i = 0;
    while (i < s.length) {
      const open = s.indexOf('<', i);
      if (open < 0) break;
      const close = s.indexOf('>', open);
      if (close < 0) break;
      const link = { uri: s.slice(open + 1, close).trim(), params: {} };
      i = close + 1;
      while (i < s.length) {
        while (i < s.length && space(s[i])) i += 1;
        if (i >= s.length) break;
        if (s[i] === ',') {
          i += 1;
          break;
        }
        if (s[i] !== ';') {
          const comma = s.indexOf(',', i);
          i = comma < 0 ? s.length : comma + 1;
          break;
        }
        i += 1;
        while (i < s.length && space(s[i])) i += 1;
        let name = '';
        while (i < s.length && !'=;,'.includes(s[i]) && !space(s[i])) name += s[i++];
        while (i < s.length && space(s[i])) i += 1;
        let value = '';
        if (s[i] === '=') {
          i += 1;
          while (i < s.length && space(s[i])) i += 1;
          if (s[i] === '"') {
            i += 1;
            while (i < s.length && s[i] !== '"') {
              if (s[i] === '\\' && i + 1 < s.length) i += 1;
              value += s[i++];
            }
            i += 1;
          } else {
            while (i < s.length && !';,'.includes(s[i]) && !space(s[i])) value += s[i++];
          }
        }
        if (name) link.params[name.toLowerCase()] = value;
      }
      links.push(link);
    }
    return links;
  }

  // The ICE servers the WHIP endpoint hands out (OPTIONS, Link rel="ice-server"); none when
  // it gives none or does not answer in time: the call then goes on without.
  async function iceServers(token) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), OPTIONS_CAP_MS);
    try {
      const res = await fetch(WHIP_URL, {
        method: 'OPTIONS',
        headers: { Authorization: `Bearer ${token}` },
        cache: 'no-store',
        credentials: 'omit',
        signal: abort.signal,
      });
      if (!res.ok) return [];
      const servers = [];
      for (const link of parseLinks(res.headers.get('Link'))) {
        const rel = (link.params.rel || '').toLowerCase().split(/\s+/);
        if (!rel.includes('ice-server') || !/^(stuns?|turns?):/i.test(link.uri)) continue;
        const server = { urls: link.uri };
        if (link.params.username !== undefined) server.username = link.params.username;
        if (link.params.credential !== undefined) server.credential = link.params.credential;
        servers.push(server);
      }
      return servers;
    } catch (_) {
      return [];
    } finally {
      clearTimeout(timer);
    }
  }

  function gathered(pc) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (pc.iceGatheringState === 'complete') done();
      };
      const done = () => {
        clearTimeout(timer);
        pc.removeEventListener('icegatheringstatechange', check);
        resolve();
      };
      const timer = setTimeout(done, GATHER_CAP_MS);
      pc.addEventListener('icegatheringstatechange', check);
    });
  }

  function audioContext() {
    if (!call.audioCtx) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return null;
      try {
        call.audioCtx = new Ctx();
      } catch (_) {
        return null;
      }
    }
    if (call.audioCtx.state === 'suspended') call.audioCtx.resume().catch(() => {});
    return call.audioCtx;
  }

  function analyser(stream) {
    const ctx = audioContext();
    if (!ctx) return null;
    try {
      const node = ctx.createAnalyser();
      node.fftSize = 1024;
      ctx.createMediaStreamSource(stream).connect(node);
      return { node, buf: new Float32Array(node.fftSize) };
    } catch (_) {
      return null;
    }
  }

  function rms(a) {
    a.node.getFloatTimeDomainData(a.buf);
    let sum = 0;
    for (let i = 0; i < a.buf.length; i += 1) sum += a.buf[i] * a.buf[i];
    return Math.sqrt(sum / a.buf.length);
  }

  // Marks "<name>-audio-start" when the level rises after silence and "<name>-audio-end"
  // (stamped when the quiet began) once it stays quiet.
  function speechMarks(name) {
    let active = false;
    let quietSince = 0;
    return (level, now) => {
      if (!active) {
        if (level >= SPEECH_ON) {
          active = true;
          quietSince = 0;
          record(`${name}-audio-start`, { level });
        }
      } else if (level < SPEECH_OFF) {
        if (!quietSince) quietSince = now;
        if (now - quietSince >= SPEECH_HANG_MS) {
          active = false;
          record(`${name}-audio-end`, { t: Date.now() - Math.round(now - quietSince) });
          quietSince = 0;
        }
      } else {
        quietSince = 0;
      }
    };
  }
  let micMarks = speechMarks('mic');
  let remoteMarks = speechMarks('remote');

  function tick() {
    const now = performance.now();
    const dt = call.lastTick ? (now - call.lastTick) / 1000 : TICK_MS / 1000;
    call.lastTick = now;
    if (call.micAnalyser) {
      const level = rms(call.micAnalyser);
      call.micEnergy += level * level * dt;
      micMarks(level, now);
      // The bar: -60 dBFS (empty) to 0 dBFS (full).
      const db = level > 0 ? 20 * Math.log10(level) : -100;
      if (ui) ui.meter.value = Math.min(1, Math.max(0, (db + 60) / 60));
    }
    if (call.remoteAnalyser) {
      const level = rms(call.remoteAnalyser);
      call.remoteEnergy += level * level * dt;
      remoteMarks(level, now);
    }
  }

  // totalAudioEnergy (the sum of level² × seconds) as the browser counts it, where it does.
  async function readStats() {
    const pc = call.pc;
    if (!pc) return;
    try {
      const report = await pc.getStats();
      report.forEach((r) => {
        if (r.kind !== 'audio' || typeof r.totalAudioEnergy !== 'number') return;
        if (r.type === 'inbound-rtp') call.remoteStatsEnergy = r.totalAudioEnergy;
        else if (r.type === 'media-source') call.micStatsEnergy = r.totalAudioEnergy;
      });
    } catch (_) {
      // closed meanwhile
    }
  }

  function playRemote(stream) {
    if (!ui) return;
    ui.audio.srcObject = stream;
    const played = ui.audio.play();
    if (played && played.catch) {
      played.catch(() => {
        // Autoplay refused (no gesture yet): the next click or key anywhere resumes it.
        const resume = () => {
          ui.audio.play().catch(() => {});
          if (call.audioCtx) call.audioCtx.resume().catch(() => {});
        };
        document.addEventListener('pointerdown', resume, { once: true, capture: true });
        document.addEventListener('keydown', resume, { once: true, capture: true });
      });
    }
    call.remoteAnalyser = analyser(stream);
  }

  function peer(servers) {
    try {
      return new RTCPeerConnection({ iceServers: servers, bundlePolicy: 'max-bundle' });
    } catch (e) {
      if (!servers.length) throw e;
      return new RTCPeerConnection({ bundlePolicy: 'max-bundle' }); // a malformed server
    }
  }

  // Hangs up the call's WHIP resource, once.
  function deleteResource(keepalive) {
    const url = call.resource;
    call.resource = null;
    return url ? sendDelete(url, call.token, keepalive) : Promise.resolve();
  }

  function sendDelete(url, token, keepalive) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), DELETE_CAP_MS);
    return fetch(url, {
      method: 'DELETE',
      headers: { Authorization: `Bearer ${token}` },
      credentials: 'omit',
      keepalive: Boolean(keepalive),
      signal: keepalive ? undefined : abort.signal,
    })
      .then(() => record('deleted'))
      .catch(() => {})
      .finally(() => clearTimeout(timer));
  }

  // Ends the call (state `ended` or `failed` with the reason) and lets go of everything.
  function finish(state, reason) {
    if (!ACTIVE.has(call.state)) return;
    call.run += 1;
    if (call.post) call.post.abort();
    call.post = null;
    clearInterval(call.ticker);
    clearInterval(call.statsTimer);
    clearTimeout(call.connectTimer);
    call.ticker = call.statsTimer = call.connectTimer = null;
    if (call.pc) {
      call.pc.onconnectionstatechange = null;
      call.pc.ontrack = null;
      call.pc.close();
    }
    if (call.mic) call.mic.getTracks().forEach((t) => t.stop());
    if (call.audioCtx) call.audioCtx.close().catch(() => {});
    if (ui) ui.audio.srcObject = null;
    call.pc = call.mic = call.audioCtx = call.micAnalyser = call.remoteAnalyser = null;
    setState(state, reason);
  }

  const fail = (reason) => finish('failed', reason);

  async function start(tokenSource) {
    if (ACTIVE.has(call.state)) return;
    const run = ++call.run;
    const stale = () => run !== call.run;
    Object.assign(call, {
      token: null, resource: null, id: null, wasConnected: false, lastTick: 0,
      micEnergy: 0, remoteEnergy: 0, micStatsEnergy: null, remoteStatsEnergy: null,
    });
    micMarks = speechMarks('mic');
    remoteMarks = speechMarks('remote');
    setState('requesting-microphone');
    audioContext(); // created inside the click, so it may play and analyse at once

    const asked = Promise.resolve().then(tokenSource);
    asked.catch(() => {}); // reported below, after the microphone
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      fail('This browser cannot use a microphone on this page (it needs a secure, HTTPS connection).');
      return;
    }
    let mic;
    try {
      mic = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
        video: false,
      });
    } catch (e) {
      if (!stale()) fail(micError(e));
      return;
    }
    if (stale()) {
      mic.getTracks().forEach((t) => t.stop());
      return;
    }
    call.mic = mic;
    record('microphone');
    const track = mic.getAudioTracks()[0];
    track.addEventListener('ended', () => {
      if (ACTIVE.has(call.state)) hangUp('The microphone stopped.');
    });
    call.micAnalyser = analyser(mic);
    call.ticker = setInterval(tick, TICK_MS);
    setState('connecting');

    let token;
    try {
      token = await asked;
      call.token = token;
    } catch (e) {
      if (!stale()) fail((e && e.message) || String(e));
      return;
    }
    if (stale()) return;
    const servers = await iceServers(call.token);
    if (stale()) return;
    record('ice-servers', { count: servers.length });

    let pc;
    let sender;
    try {
      pc = peer(servers);
      call.pc = pc;
      ({ sender } = pc.addTransceiver(track, { direction: 'sendrecv', streams: [mic] }));
      pc.ontrack = (e) => {
        record('remote-track');
        playRemote(e.streams && e.streams[0] ? e.streams[0] : new MediaStream([e.track]));
      };
      pc.onconnectionstatechange = () => connectionChanged(pc);
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
    } catch (e) {
      if (!stale()) fail(`The browser could not prepare the call: ${(e && e.message) || e}`);
      return;
    }
    if (stale()) return;

    let res;
    call.post = new AbortController();
    try {
      record('offer');
      res = await fetch(WHIP_URL, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${call.token}` },
        body: pc.localDescription.sdp,
        cache: 'no-store',
        credentials: 'omit',
        signal: call.post.signal,
      });
    } catch (e) {
      if (!stale()) fail(`Parley could not be reached: ${(e && e.message) || e}`);
      return;
    }
    call.post = null;
    if (stale()) {
      // Hung up while the offer was on its way: end what the server may have started.
      const location = res.headers.get('Location');
      if (res.ok && location) sendDelete(new URL(location, WHIP_URL).href, token, false);
      return;
    }
    if (res.status !== 201 && res.status !== 200) {
      const reason = await refusal(res);
      if (!stale()) fail(reason);
      return;
    }
    const location = res.headers.get('Location');
    if (location) {
      call.resource = new URL(location, WHIP_URL).href;
      call.id = decodeURIComponent(new URL(call.resource).pathname.split('/').filter(Boolean).pop() || '') || null;
    }
    let answer;
    try {
      answer = await res.text();
      if (stale()) return;
      record('answer', { callId: call.id });
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    } catch (e) {
      if (stale()) return;
      await deleteResource(false);
      if (!stale()) fail(`The server's answer could not be used: ${(e && e.message) || e}`);
      return;
    }
    if (stale()) return;
    // The server hanging up closes DTLS (close_notify): the call is over.
    const dtls = sender && sender.transport;
    if (dtls) {
      dtls.addEventListener('statechange', () => {
        if (dtls.state === 'closed' && call.pc === pc && ACTIVE.has(call.state)) {
          call.resource = null; // nothing left to delete
          finish('ended', 'The agent hung up.');
        }
      });
    }
    call.statsTimer = setInterval(readStats, STATS_MS);
    call.connectTimer = setTimeout(() => {
      if (call.pc === pc && call.state === 'connecting') {
        deleteResource(false);
        fail('The audio connection timed out (a firewall may block it).');
      }
    }, CONNECT_CAP_MS);
    connectionChanged(pc);
  }

  function connectionChanged(pc) {
    if (pc !== call.pc) return;
    const s = pc.connectionState;
    if (s === 'connected' && call.state === 'connecting') {
      call.wasConnected = true;
      clearTimeout(call.connectTimer);
      setState('connected');
      if (call.audioCtx) call.audioCtx.resume().catch(() => {});
    } else if (s === 'failed') {
      deleteResource(false);
      if (call.wasConnected) finish('ended', 'The connection was lost.');
      else fail('The audio connection could not be established (ICE/DTLS failed).');
    } else if (s === 'closed') {
      finish('ended', 'The connection closed.');
    }
  }

  async function hangUp(reason) {
    if (!ACTIVE.has(call.state)) return;
    record('hang-up');
    const deleting = deleteResource(false);
    finish('ended', typeof reason === 'string' ? reason : 'You hung up.');
    await deleting;
  }

  // Leaving the page hangs up: the DELETE goes out with keepalive, so it outlives the page.
  function leaving() {
    if (!ACTIVE.has(call.state)) return;
    deleteResource(true);
    finish('ended', 'The page was closed.');
  }
  window.addEventListener('pagehide', leaving);
  window.addEventListener('beforeunload', leaving);

  const api = {
    start(options) {
      const token = options && options.token;
      return start(token ? () => token : defaultToken);
    },
    hangUp: () => hangUp(),
    get state() {
      return call.state;
    },
    get reason() {
      return call.reason;
    },
  };

  function wire() {
    ui.call.addEventListener('click', () => {
      api.start();
    });
    ui.hangUp.addEventListener('click', () => {
      hangUp();
    });
    ui.mute.addEventListener('click', () => setMuted(micTrack() ? micTrack().enabled : false));
  }

  // --- page mode: /call?token=… --------------------------------------------------------

  function mountPage() {
    const root = document.getElementById('parley-call');
    if (!root) return;
    root.replaceChildren();
    ui = buildControls(root);
    const token = new URLSearchParams(window.location.search).get('token') || '';
    canCall = () => Boolean(token);
    defaultToken = () => {
      if (!token) throw new CallError('This link has no call token.');
      return token;
    };
    wire();
    if (token) render();
    else setState('failed', 'This link has no call token (…/call?token=…). Ask the business for a new link.');

    window.parleyTest = {
      state: () => call.state,
      reason: () => call.reason,
      callId: () => call.id,
      remoteEnergy: () => (call.remoteStatsEnergy !== null ? call.remoteStatsEnergy : call.remoteEnergy),
      micEnergy: () => (call.micStatsEnergy !== null ? call.micStatsEnergy : call.micEnergy),
      events,
    };
  }

  // --- widget mode: a floating button on the business's own page -----------------------

  async function tokenFromSite() {
    if (config.token) return config.token;
    if (!config.tokenUrl) {
      throw new CallError('No call token: the widget needs data-token or data-token-url.');
    }
    const method = (config.tokenMethod || 'POST').toUpperCase() === 'GET' ? 'GET' : 'POST';
    let res;
    try {
      res = await fetch(new URL(config.tokenUrl, document.baseURI).href, {
        method,
        headers: { Accept: 'application/json' },
        credentials: 'same-origin',
        cache: 'no-store',
      });
    } catch (e) {
      throw new CallError(`The site could not be asked for a call token: ${(e && e.message) || e}`);
    }
    let body = null;
    try {
      body = await res.json();
    } catch (_) {
      body = null;
    }
    if (!res.ok || !body || typeof body.token !== 'string' || !body.token) {
      throw new CallError(`The site gave no call token (HTTP ${res.status}).`);
    }
    return body.token;
  }

  function mountWidget() {
    // A custom element name: the site's rules for div or section do not match the host.
    const host = el('parley-call', {});
    const shadow = host.attachShadow({ mode: 'open' });
    const style = el('link', { rel: 'stylesheet', href: CSS_URL });
    const launcher = el('button', { type: 'button', class: 'launcher', 'aria-expanded': 'false',
      'aria-controls': 'panel' }, 'Call us');
    const close = el('button', { type: 'button', class: 'close', 'aria-label': 'Close' }, '×');
    const panel = el('section', { id: 'panel', class: 'parley panel', hidden: true,
      'aria-label': 'Call' }, el('div', { class: 'panel-head' }, el('strong', {}, 'Call us'), close));
    launcher.hidden = true; // until its style has loaded (or failed to)
    style.addEventListener('load', () => { launcher.hidden = false; });
    style.addEventListener('error', () => { launcher.hidden = false; });
    shadow.append(style, panel, launcher);
    ui = buildControls(panel);
    canCall = () => Boolean(config.token || config.tokenUrl);
    defaultToken = tokenFromSite;
    wire();
    const open = (shown) => {
      panel.hidden = !shown;
      launcher.setAttribute('aria-expanded', String(shown));
    };
    launcher.addEventListener('click', () => {
      if (!panel.hidden && !ACTIVE.has(call.state)) {
        open(false);
        return;
      }
      open(true);
      if (!ACTIVE.has(call.state)) api.start();
    });
    close.addEventListener('click', () => open(false));
    onRender = (s) => {
      launcher.textContent = ACTIVE.has(s) ? 'In call' : 'Call us';
      launcher.classList.toggle('active', ACTIVE.has(s));
    };
    render();
    document.body.append(host);
  }

  window.ParleyCall = api;
  const mount = MODE === 'page' ? mountPage : mountWidget;
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', mount);
  else mount();
})();
