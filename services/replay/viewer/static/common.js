// Earpiece viewer: the API key, kept in this tab's sessionStorage, sent on every API call.
"use strict";
const KEY_ITEM = "earpiece-api-key";

function apiKey() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("key");
  if (fromHash) {
    sessionStorage.setItem(KEY_ITEM, fromHash);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(KEY_ITEM) || "";
}

function askForKey(message) {
  document.querySelector("main").innerHTML =
    '<form class="login" id="login"><h2>API key</h2>' +
    '<p>An analyst or admin key (<code>earpiece keys create --role analyst</code>).</p>' +
    (message ? '<p class="error"></p>' : "") +
    '<input name="key" autocomplete="off" placeholder="ep_..."> <button>open</button></form>';
  if (message) document.querySelector(".login .error").textContent = message;
  document.getElementById("login").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY_ITEM, new FormData(e.target).get("key").trim());
    location.reload();
  });
}

async function api(path, { as = "json" } = {}) {
  const key = apiKey();
  const response = await fetch(path, { headers: key ? { Authorization: "Bearer " + key } : {} });
  if (response.status === 401 || response.status === 403) {
    const text = await response.text();
    if (response.status === 401) sessionStorage.removeItem(KEY_ITEM);
    askForKey(text);
    throw new Error(text);
  }
  if (!response.ok) throw new Error(response.status + ": " + (await response.text()));
  if (as === "response") return response;
  return as === "json" ? response.json() : response.arrayBuffer();
}

async function showWho() {
  try {
    const who = await api("/api/whoami");
    document.getElementById("who").textContent = who.key_id + " · " + who.tenant_id + " · " + who.role;
  } catch (e) { /* the login form is showing */ }
}

function ms(value) { return value === null || value === undefined ? "–" : value.toLocaleString() + " ms"; }
function secs(value) { return (value / 1000).toFixed(2) + " s"; }
function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}
