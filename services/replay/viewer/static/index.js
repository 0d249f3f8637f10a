// The sessions list: the search filters → /api/sessions.
"use strict";
let nextToken = "";

function query(token) {
  const params = new URLSearchParams();
  for (const [k, v] of new FormData(document.getElementById("search"))) if (v) params.set(k, v);
  if (token) params.set("page_token", token);
  return params;
}

async function search(append) {
  const params = query(append ? nextToken : "");
  history.replaceState(null, "", "/?" + query("").toString());
  document.getElementById("status").textContent = "searching…";
  const result = await api("/api/sessions?" + params.toString());
  const body = document.querySelector("#sessions tbody");
  if (!append) body.innerHTML = "";
  for (const s of result.sessions) {
    const row = el("tr", { "data-session": s.session_id });
    const link = el("a", { href: "/session/" + encodeURIComponent(s.session_id) }, s.session_id);
    const first = el("td");
    first.appendChild(link);
    row.appendChild(first);
    const latency = el("td", {}, ms(s.first_audio_max_ms));
    if (s.first_audio_max_ms > 1500) latency.className = "slow";
    for (const text of [s.tenant_id, s.created_at.replace("T", " ").slice(0, 19), s.status, s.persona, String(s.turns)]) {
      row.appendChild(el("td", {}, text));
    }
    row.appendChild(latency);
    for (const text of [String(s.interruptions), s.tool_names.join(", "), s.error_kinds.join(", "), "$" + s.cost_usd.toFixed(4), s.snippet]) {
      row.appendChild(el("td", {}, text));
    }
    body.appendChild(row);
  }
  nextToken = result.next_page_token;
  document.getElementById("more").hidden = !nextToken;
  document.getElementById("status").textContent = body.children.length + " session(s)";
}

document.getElementById("search").addEventListener("submit", (e) => { e.preventDefault(); search(false); });
document.getElementById("more").addEventListener("click", () => search(true));
for (const [k, v] of new URLSearchParams(location.search)) {
  const input = document.querySelector(`#search [name="${k}"]`);
  if (input) input.value = v;
}
apiKey();
showWho();
search(false).catch((e) => { const s = document.getElementById("status"); if (s) s.textContent = e.message; });
