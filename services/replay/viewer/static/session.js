// A session page: both tracks' waveforms, lanes, the transcript in sync with playback, metrics.
"use strict";
const sessionId = decodeURIComponent(location.pathname.split("/").pop());
const audio = document.getElementById("audio");
let durationMs = 1;

function place(node, startMs, endMs) {
  node.style.left = (100 * startMs / durationMs) + "%";
  if (endMs !== undefined && endMs !== null) {
    node.style.width = Math.max(0.2, 100 * (endMs - startMs) / durationMs) + "%";
  }
}

function laneItem(laneId, startMs, endMs, title, extra = {}) {
  const node = el("div", { class: "lane-item", title, "data-start-ms": String(startMs),
                           "data-end-ms": String(endMs ?? startMs), ...extra });
  place(node, startMs, endMs);
  document.getElementById(laneId).appendChild(node);
  return node;
}

function drawLanes(a) {
  for (const s of a.user_speech) laneItem("lane-user", s.start_ms, s.end_ms, "user speaks " + secs(s.end_ms - s.start_ms));
  for (const s of a.assistant_speech) laneItem("lane-assistant", s.start_ms, s.end_ms, "assistant " + s.label);
  for (const c of a.tools) {
    if (c.held_ms !== null) {
      const end = c.started_ms ?? c.finished_ms ?? c.held_ms;
      laneItem("lane-held", c.held_ms, Math.max(end, c.held_ms), c.name + " held", { "data-call": c.call_id });
    }
    if (c.started_ms !== null) {
      const end = c.finished_ms ?? c.started_ms;
      laneItem("lane-running", c.started_ms, end, c.name + " " + (c.outcome || "running"), { "data-call": c.call_id });
    }
  }
  for (const c of a.contexts) laneItem("lane-context", c.at_ms, null, "context " + JSON.stringify(c.state));
  for (const i of a.interruptions) laneItem("lane-barge", i.at_ms, null, "barge-in: heard " + i.audio_end_ms + " ms");
  for (const l of a.links) laneItem("lane-links", l.at_ms, null, l.kind + " " + l.reason);
}

function drawSummary(a) {
  const m = a.metrics;
  document.getElementById("title").textContent = "session " + a.session_id;
  const parts = [
    ["tenant", a.tenant_id], ["persona", a.persona || "–"], ["prompt", a.prompt_hash.slice(0, 12)],
    ["duration", secs(a.duration_ms)], ["events", a.event_count.toLocaleString()],
    ["turns", a.turns.length], ["interruptions", m.interruptions],
    ["first audio p50", ms(m.first_audio_latency_p50_ms)], ["cost", "$" + m.cost_usd.toFixed(4)],
  ];
  if (a.rerun_of) parts.push(["re-run of", a.rerun_of]);
  const box = document.getElementById("summary");
  for (const [k, v] of parts) {
    const span = el("span");
    span.appendChild(el("b", {}, k + " "));
    span.appendChild(document.createTextNode(String(v)));
    box.appendChild(span);
  }
}

function drawTranscript(a) {
  const lines = [];
  for (const t of a.turns) {
    if (t.user_transcript) lines.push({ at: t.speech_started_ms, who: "user", text: t.user_transcript, rest: "" });
  }
  for (const r of a.responses) {
    if (r.first_audio_ms === null || !r.transcript) continue;
    const heard = r.heard_transcript ?? r.transcript;
    lines.push({ at: r.first_audio_ms, who: "assistant", text: heard, rest: r.transcript.slice(heard.length),
                 cut: r.interrupted });
  }
  lines.sort((x, y) => x.at - y.at);
  const list = document.getElementById("transcript");
  for (const line of lines) {
    const li = el("li", { class: line.who, "data-at-ms": String(line.at) });
    li.appendChild(el("span", { class: "t" }, secs(line.at)));
    li.appendChild(el("span", { class: "who" }, line.who + ": "));
    li.appendChild(el("span", { class: "text" }, line.text));
    if (line.rest) li.appendChild(el("span", { class: "unheard", title: "generated, never heard" }, line.rest));
    if (line.cut) li.appendChild(el("span", { class: "cut" }, "✂ cut at barge-in"));
    li.addEventListener("click", () => seek(line.at));
    list.appendChild(li);
  }
}

function drawMetrics(a) {
  const m = a.metrics;
  const table = document.getElementById("metrics");
  const head = el("tr");
  for (const h of ["turn", "first audio", "Earpiece", "model", "user talk", "assistant talk", "tools", "cut"]) head.appendChild(el("th", {}, h));
  table.appendChild(head);
  for (const t of m.turns) {
    const row = el("tr", { "data-turn": String(t.turn) });
    for (const v of [t.turn, ms(t.first_audio_latency_ms), ms(t.earpiece_ms), ms(t.model_ms), secs(t.user_talk_ms),
                     secs(t.assistant_talk_ms), t.tool_calls, t.interrupted ? "yes" : ""]) row.appendChild(el("td", {}, String(v)));
    table.appendChild(row);
  }
  const extra = [
    ["speech done → tool started", m.speech_done_to_tool_start_ms.map(ms).join(", ") || "–"],
    ["tool durations", m.tool_durations_ms.map(ms).join(", ") || "–"],
    ["talk time", "user " + secs(m.user_talk_ms) + ", assistant " + secs(m.assistant_talk_ms)],
    ["tokens", "in " + (m.usage.input_tokens || 0) + ", out " + (m.usage.output_tokens || 0)],
  ];
  for (const [k, v] of extra) {
    const row = el("tr");
    row.appendChild(el("th", {}, k));
    const cell = el("td", { colspan: "7" }, v);
    row.appendChild(cell);
    table.appendChild(row);
  }
  // Latency chart: one stacked bar per turn, Earpiece's part under the model's.
  const svg = document.getElementById("latency-chart");
  const ns = "http://www.w3.org/2000/svg";
  const turns = m.turns.filter((t) => t.first_audio_latency_ms !== null);
  const max = Math.max(1500, ...turns.map((t) => t.first_audio_latency_ms));
  const W = 460, H = 220, pad = 30, bw = Math.min(40, (W - pad) / Math.max(1, turns.length) - 6);
  const y = (v) => H - pad - (H - 2 * pad) * v / max;
  const line = document.createElementNS(ns, "line");
  for (const [k, v] of Object.entries({ x1: pad, x2: W, y1: y(1500), y2: y(1500), stroke: "#d23b3b", "stroke-dasharray": "4 3" })) line.setAttribute(k, v);
  svg.appendChild(line);
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", pad + 2); label.setAttribute("y", y(1500) - 3); label.setAttribute("font-size", "10");
  label.textContent = "1.5 s"; svg.appendChild(label);
  turns.forEach((t, i) => {
    const x = pad + 6 + i * (bw + 6);
    const earpiece = t.earpiece_ms || 0;
    for (const [cls, from, to] of [["earpiece", 0, earpiece], ["model", earpiece, t.first_audio_latency_ms]]) {
      const r = document.createElementNS(ns, "rect");
      r.setAttribute("class", "bar " + cls);
      r.setAttribute("data-turn", String(t.turn));
      r.setAttribute("x", x); r.setAttribute("width", bw);
      r.setAttribute("y", y(to)); r.setAttribute("height", Math.max(0, y(from) - y(to)));
      svg.appendChild(r);
    }
    const text = document.createElementNS(ns, "text");
    text.setAttribute("x", x); text.setAttribute("y", H - pad + 12); text.setAttribute("font-size", "10");
    text.textContent = "t" + t.turn + " " + t.first_audio_latency_ms; svg.appendChild(text);
  });
}

function wavPcm(buffer) {
  const view = new DataView(buffer);
  let offset = 12;
  while (offset + 8 <= view.byteLength) {
    const id = String.fromCharCode(...new Uint8Array(buffer, offset, 4));
    const size = view.getUint32(offset + 4, true);
    if (id === "data") return new Int16Array(buffer, offset + 8, Math.floor(Math.min(size, view.byteLength - offset - 8) / 2));
    offset += 8 + size + (size & 1);
  }
  return new Int16Array(0);
}

function drawWave(canvasId, pcm, channel) {
  const canvas = document.getElementById(canvasId);
  const width = canvas.clientWidth || 1000;
  canvas.width = width;
  const ctx = canvas.getContext("2d");
  const frames = pcm.length / 2;
  const per = Math.max(1, Math.floor(frames / width));
  ctx.fillStyle = channel === 0 ? "#1f8fb8" : "#2e9d4f";
  const mid = canvas.height / 2;
  for (let x = 0; x < width; x++) {
    let lo = 0, hi = 0;
    const start = Math.floor(x * frames / width);
    for (let i = start; i < start + per && i < frames; i += 4) {
      const v = pcm[2 * i + channel];
      if (v < lo) lo = v; if (v > hi) hi = v;
    }
    ctx.fillRect(x, mid - hi / 32768 * mid, 1, Math.max(1, (hi - lo) / 32768 * mid));
  }
}

function drawHoles(markers, purged) {
  for (const m of markers) {
    const box = document.getElementById(m.channel === "user" ? "holes-user" : "holes-assistant");
    const node = el("div", { class: "hole " + m.reason, "data-start-ms": String(m.start_ms), "data-end-ms": String(m.end_ms),
                             title: m.channel + " audio " + m.reason }, m.reason);
    place(node, m.start_ms, m.end_ms);
    box.appendChild(node);
  }
  if (purged) document.getElementById("audio-note").textContent = "Stored audio was purged by retention: the samples there are silence, marked as purged; the events are kept.";
}

function movePlayhead(msNow) {
  const head = document.getElementById("playhead");
  const lane = document.getElementById("lane-user");
  const box = document.getElementById("tracks").getBoundingClientRect();
  const r = lane.getBoundingClientRect();
  head.style.left = (r.left - box.left + r.width * Math.min(1, msNow / durationMs)) + "px";
  head.dataset.ms = String(Math.round(msNow));
  document.getElementById("clock").textContent = secs(msNow);
  let current = null;
  for (const li of document.querySelectorAll("#transcript li")) {
    if (Number(li.dataset.atMs) <= msNow + 1) current = li;
    li.classList.remove("current");
  }
  if (current) current.classList.add("current");
}

function seek(atMs) {
  audio.currentTime = atMs / 1000;
  movePlayhead(atMs);
}

function clickToSeek(node) {
  node.addEventListener("click", (e) => {
    const r = node.getBoundingClientRect();
    seek(durationMs * (e.clientX - r.left) / r.width);
  });
}

async function main() {
  apiKey();
  showWho();
  const base = "/api/sessions/" + encodeURIComponent(sessionId);
  const [a, response] = await Promise.all([api(base + "/analysis"), api(base + "/audio.wav", { as: "response" })]);
  const markers = JSON.parse(response.headers.get("X-Earpiece-Markers") || "[]");
  const buffer = await response.arrayBuffer();
  const pcm = wavPcm(buffer);
  // The wall clock of the page is the audio's: the session's length, or the last audio's end.
  durationMs = Math.max(1, a.duration_ms, Math.round(pcm.length / 2 / 24));
  drawSummary(a);
  drawLanes(a);
  drawTranscript(a);
  drawMetrics(a);
  drawWave("wave-user", pcm, 0);
  drawWave("wave-assistant", pcm, 1);
  drawHoles(markers, a.audio_purged);
  audio.addEventListener("timeupdate", () => movePlayhead(audio.currentTime * 1000));
  audio.addEventListener("seeked", () => movePlayhead(audio.currentTime * 1000));
  audio.addEventListener("loadedmetadata", () => { document.body.dataset.audio = "ready"; });
  audio.src = URL.createObjectURL(new Blob([buffer], { type: "audio/wav" }));
  for (const node of document.querySelectorAll(".track, .lane")) clickToSeek(node);
  movePlayhead(0);
  document.body.dataset.analysis = "ready";
}

main().catch((e) => { const note = document.getElementById("audio-note"); if (note) note.textContent = e.message; console.error(e); });
