// dhs grade: the page. Keyboard first; every string from the data goes through textContent, never an HTML parser.
"use strict";

const GRADER_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$/;  // as grade.store.GRADER_RE
const TOP_VIEWS = [["asinh", "asinh"], ["linear", "linear"], ["contrast", "high contrast"]];
const BOTTOM_VIEWS = [["g", "g"], ["r", "r"], ["z", "z"], ["residual", "residual (host model subtracted)"]];
const PREFETCH = 3;  // candidates fetched ahead (JSON + every panel)
const RETRY_MS = 1000;  // a POST that met no server is sent again (same client token: stored once)
const PROGRESS_EVERY_MS = 2000;  // progress counts every grade of every grader: asked for at most this often

const state = {
  csrf: null, tags: [], grader: null, order: "score", ids: [], pos: 0, tag: null,
  cache: new Map(), chain: Promise.resolve(), pending: 0, progress: {}, total: 0, progressAt: 0, progressTimer: null,
};
const $ = (id) => document.getElementById(id);

function say(text, error) {
  const s = $("status");
  s.textContent = text || "";
  s.classList.toggle("error", !!error);
}

async function api(path, options) {
  const resp = await fetch(path, Object.assign({ credentials: "same-origin", cache: "no-store" }, options || {}));
  let doc = null;
  try { doc = await resp.json(); } catch (e) { doc = null; }
  if (!resp.ok) {
    const err = new Error((doc && doc.error) || ("HTTP " + resp.status));
    err.status = resp.status;
    throw err;
  }
  return doc;
}

async function session() {
  const s = await api("/api/session");
  state.csrf = s.csrf;
  state.tags = s.tags;
  state.total = s.total;
}

function token() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  const a = new Uint8Array(16);
  crypto.getRandomValues(a);
  return Array.from(a, (b) => b.toString(16).padStart(2, "0")).join("");
}

// POSTs go out one after another (a grade, then its undo), each retried until the server answers.
function post(path, body) {
  state.pending += 1;
  showProgress();
  const run = async () => {
    for (;;) {
      try {
        const r = await api(path, {
          method: "POST", body: JSON.stringify(body),
          headers: { "content-type": "application/json", "x-dhs-csrf": state.csrf },
        });
        return r;
      } catch (e) {
        if (e.status === 403) { await session(); continue; }  // server restarted: new session, same token
        if (e.status) throw e;  // refused: say so, do not retry
        say("server unreachable; retrying (nothing is lost)", true);
        await new Promise((ok) => setTimeout(ok, RETRY_MS));
      }
    }
  };
  const p = state.chain.then(run);
  state.chain = p.catch(() => null);
  return p.finally(() => { state.pending -= 1; showProgress(); refreshProgress(); });
}

// After grading, the counts are asked for again, at most every PROGRESS_EVERY_MS (the last request wins).
function refreshProgress() {
  if (state.progressTimer) return;
  const wait = Math.max(0, state.progressAt + PROGRESS_EVERY_MS - Date.now());
  state.progressTimer = setTimeout(async () => {
    state.progressAt = Date.now();
    try { state.progress = await api("/api/progress"); } catch (e) { /* the next grade asks again */ }
    state.progressTimer = null;
    showProgress();
  }, wait);
}

function showProgress() {
  const el = $("progress");
  el.textContent = "";
  const mine = state.progress[state.grader] || 0;
  const total = state.progress.total != null ? state.progress.total : state.total;
  el.append("you ");
  const b = document.createElement("b");
  b.textContent = `${mine} / ${total}`;
  el.append(b, " graded");
  const others = Object.keys(state.progress).filter((k) => k !== "total" && k !== state.grader);
  if (others.length) el.append(" \u00b7 " + others.map((k) => `${k} ${state.progress[k]}`).join(", "));
  if (state.pending) el.append(` \u00b7 saving ${state.pending}`);
}

function candidateUrl(id) {
  return "/api/candidate?" + new URLSearchParams({ id: id, grader: state.grader });
}

// A candidate: its JSON and its panel strip, fetched and decoded before it is shown (and ahead of time).
function fetchCandidate(id, fresh) {
  if (fresh || !state.cache.has(id)) {
    const p = api(candidateUrl(id)).then(async (c) => {
      if (c.image) {
        const strip = new Image();
        strip.src = c.image;
        try { await strip.decode(); c.strip = strip; } catch (e) { c.stamp_error = "the panels did not load: " + e.message; }
      }
      return c;
    });
    p.catch(() => state.cache.delete(id));
    state.cache.set(id, p);
  }
  return state.cache.get(id);
}

function prefetch() {
  for (let k = 1; k <= PREFETCH && state.pos + k < state.ids.length; k++) fetchCandidate(state.ids[state.pos + k]);
}

// One panel: the k-th 64-pixel square of the strip, drawn on a canvas the page scales up pixel for pixel.
function figure(strip, k, caption) {
  const f = document.createElement("figure");
  const size = strip.naturalHeight;
  const cv = document.createElement("canvas");
  cv.width = size;
  cv.height = size;
  const ctx = cv.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(strip, k * size, 0, size, size, 0, 0, size, size);
  cv.setAttribute("aria-label", caption);
  const cap = document.createElement("figcaption");
  cap.textContent = caption;
  f.append(cv, cap);
  return f;
}

function fmt(v) {
  if (v === null || v === undefined) return "-";
  if (typeof v === "number" && !Number.isInteger(v)) return v.toPrecision(5);
  return String(v);
}

function render(c) {
  $("done").hidden = true;
  const top = $("panels-top"), bottom = $("panels-bottom"), gone = $("gone");
  top.replaceChildren();
  bottom.replaceChildren();
  gone.hidden = !c.stamp_error;
  gone.textContent = c.stamp_error || "";
  if (!c.stamp_error && c.strip) {
    for (const [v, cap] of TOP_VIEWS) top.append(figure(c.strip, c.views.indexOf(v), cap));
    for (const [v, cap] of BOTTOM_VIEWS) bottom.append(figure(c.strip, c.views.indexOf(v), cap));
  }
  $("position").textContent = `${state.pos + 1} of ${state.ids.length} in your queue (${state.order})`;
  $("cid").textContent = c.candidate_id;
  $("score").textContent = fmt(c.score);
  $("rank").textContent = fmt(c.rank);
  const mine = $("mine");
  mine.replaceChildren();
  if (c.mine) {
    const g = document.createElement("span");
    g.className = "grade grade-" + c.mine.grade;
    g.textContent = c.mine.grade;
    mine.append("your grade ", g, c.mine.tag ? " " + c.mine.tag : "");
  }
  const rows = [["split", c.split], ["source_file", c.source_file], ["source_row", c.source_row],
    ["ra", c.ra], ["dec", c.dec], ["checkpoint", c.checkpoint_hash]]
    .concat(Object.entries(c.metadata).filter(([k]) => k !== "ra" && k !== "dec"));
  const body = $("meta").tBodies[0];
  body.replaceChildren();
  for (const [k, v] of rows) {
    if (v === null || v === undefined) continue;
    const tr = body.insertRow();
    tr.insertCell().textContent = k;
    tr.insertCell().textContent = fmt(v);
  }
  document.body.dataset.candidate = c.candidate_id;
}

function showTags() {
  const box = $("tags");
  box.replaceChildren();
  state.tags.forEach((t, i) => {
    const s = document.createElement("span");
    s.textContent = `${i + 1} ${t}`;
    if (state.tag === t) s.className = "on";
    box.append(s);
  });
}

async function show(fresh) {
  if (state.pos >= state.ids.length) {
    $("panels-top").replaceChildren();
    $("panels-bottom").replaceChildren();
    $("gone").hidden = true;
    const done = $("done");
    done.hidden = false;
    done.textContent = state.ids.length ? "End of your queue: every candidate has your grade (U undoes the last)."
      : "Nothing in your queue: every candidate has your grade.";
    $("cid").textContent = "";
    $("position").textContent = "";
    document.body.dataset.candidate = "";
    return;
  }
  const id = state.ids[state.pos];
  try {
    if (fresh) await state.chain;  // a grade on its way changes "your grade": read it after the POSTs
    const c = await fetchCandidate(id, fresh);
    if (state.ids[state.pos] === id) render(c);
  } catch (e) {
    say(e.message, true);
  }
  prefetch();
}

async function loadQueue() {
  const q = await api("/api/queue?" + new URLSearchParams({ grader: state.grader, order: state.order }));
  state.ids = q.ids;
  state.progress = q.progress;
  state.pos = 0;
  state.cache.clear();
  showProgress();
  await show();
}

function grade(g) {
  if (state.pos >= state.ids.length) return;
  const id = state.ids[state.pos];
  const body = { candidate_id: id, grader: state.grader, grade: g, tag: state.tag, client_token: token() };
  state.cache.delete(id);  // its "your grade" changed
  post("/api/grade", body).then(() => say(`${g} saved`), (e) => say(e.message, true));
  state.tag = null;
  showTags();
  state.pos += 1;
  show();
}

function undo() {
  post("/api/undo", { grader: state.grader, client_token: token() }).then((r) => {
    if (!r.candidate_id) { say("nothing to undo"); return; }
    say("undone");
    const at = state.ids.indexOf(r.candidate_id);
    if (at >= 0) state.pos = at; else state.ids.splice(state.pos, 0, r.candidate_id);
    show(true);
  }, (e) => say(e.message, true));
}

function onKey(ev) {
  if (ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement) return;
  if (ev.ctrlKey || ev.metaKey || ev.altKey || !state.grader) return;
  const k = ev.key;
  if (ev.repeat && !k.startsWith("Arrow")) { ev.preventDefault(); return; }  // a held key grades once
  const up = k.length === 1 ? k.toUpperCase() : k;
  if ("ABCNS".includes(up) && up.length === 1) grade(up);
  else if (up === "U") undo();
  else if (k === "ArrowLeft" && state.pos > 0) { state.pos -= 1; show(true); }
  else if (k === "ArrowRight" && state.pos < state.ids.length) { state.pos += 1; show(); }
  else if (k >= "1" && k <= String(state.tags.length)) {
    const t = state.tags[Number(k) - 1];
    state.tag = state.tag === t ? null : t;
    showTags();
  } else if (k === "0") { state.tag = null; showTags(); }
  else return;
  ev.preventDefault();
}

function setGrader(name) {
  state.grader = name;
  localStorage.setItem("dhs-grade-grader", name);
  $("grader").value = name;
  $("ask").hidden = true;
  loadQueue().catch((e) => say(e.message, true));
}

function ask() {
  $("ask").hidden = false;
  $("ask-name").focus();
}

async function start() {
  $("ask-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const name = $("ask-name").value.trim();
    if (GRADER_RE.test(name) && name.toLowerCase() !== "total") setGrader(name);
    else $("ask-error").textContent = "1-40 letters, digits, '.', '_' or '-', starting with a letter or digit";
  });
  $("grader").addEventListener("change", () => {
    const name = $("grader").value.trim();
    if (GRADER_RE.test(name) && name.toLowerCase() !== "total") { setGrader(name); $("grader").blur(); }
    else { $("grader").value = state.grader || ""; say("grader names: letters, digits, '.', '_', '-'", true); }
  });
  $("order").addEventListener("change", () => {
    state.order = $("order").value;
    localStorage.setItem("dhs-grade-order", state.order);
    $("order").blur();
    loadQueue().catch((e) => say(e.message, true));
  });
  document.addEventListener("keydown", onKey);
  try { await session(); } catch (e) { say(e.message, true); return; }
  showTags();
  state.order = localStorage.getItem("dhs-grade-order") || "score";
  $("order").value = state.order;
  const name = localStorage.getItem("dhs-grade-grader");
  if (name && GRADER_RE.test(name)) setGrader(name); else ask();
}

document.addEventListener("DOMContentLoaded", start);
