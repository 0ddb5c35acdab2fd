// blendgate /ui: the dashboard and the side-by-side playground. Plain DOM, no framework.
// Requests carry the page's cookie (set by /ui/login when the gateway has API keys).
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const answers = { a: null, b: null };  // {id, model} of the last answers shown

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

const pct = (v) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)}%`);
const sec = (v) => (v === null || v === undefined ? "–" : `${v.toFixed(2)} s`);
const num = (v, d = 0) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
  return body;
}

// ------------------------------------------------------------------ dashboard

function table(headers, rows) {
  const t = el("table", {}, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))));
  const tbody = el("tbody");
  for (const row of rows) tbody.append(el("tr", {}, ...row.map((cell) =>
    cell instanceof Node ? el("td", {}, cell) : el("td", { class: "num" }, cell))));
  t.append(tbody);
  return t;
}

function experimentView(exp) {
  const evidence = exp.enough_evidence
    ? el("span", { class: "evidence-yes" }, "enough evidence")
    : el("span", { class: "muted" }, "not enough evidence yet");
  const rows = exp.arms.map((arm) => {
    const w = arm.win_rate;
    return [el("span", {}, `${arm.name} (${arm.model})`), num(arm.weight, 2), arm.requests,
      arm.shadow_requests, w.n ? `${pct(w.rate)} [${pct(w.low)}, ${pct(w.high)}]` : "–",
      w.n ? `${w.wins}/${w.ties}/${w.losses}` : "–", arm.feedback_votes,
      arm.feedback_mean_score === null ? "–" : num(arm.feedback_mean_score, 2),
      sec(arm.latency_p50_s), sec(arm.latency_p95_s), num(arm.completion_tokens_per_answer)];
  });
  return el("div", { class: "experiment", "data-id": exp.id },
    el("h3", {}, `${exp.id} `, evidence),
    el("div", { class: "muted" }, `judge: ${exp.judge || "none"}; shadow arm: ${exp.shadow_arm || "none"}` +
      (exp.shadow ? `; shadow runs ${exp.shadow.completed} done, ${exp.shadow.dropped} dropped` : "")),
    table(["arm", "weight", "requests", "shadow", "judged win rate [95%]", "W/T/L", "votes",
      "vote score", "p50", "p95", "tokens"], rows));
}

async function loadDashboard() {
  const box = $("#experiments");
  try {
    const body = await api("/v1/experiments");
    box.replaceChildren(...(body.data.length ? body.data.map(experimentView)
      : [el("p", { class: "muted" }, "No experiments configured.")]));
    $("#model-feedback tbody").replaceChildren(...body.models.map((m) => el("tr",
      { "data-model": m.model }, el("td", {}, m.model), el("td", { class: "num votes" }, m.feedback_votes),
      el("td", { class: "num" }, num(m.feedback_mean_score, 2)))));
    const s = body.store;
    $("#store").textContent = s ? `store ${s.url}: ${s.written} events written, ${s.queued} queued, ` +
      `${s.lost} lost, ${s.dropped} dropped${s.healthy ? "" : " (UNAVAILABLE)"}` : "no store";
  } catch (error) {
    box.textContent = `Statistics unavailable: ${error.message}`;
  }
}

// ------------------------------------------------------------------ playground

async function loadModels() {
  const body = await api("/v1/models");
  for (const [select, preferred] of [[$("#model-a"), "ensemble"], [$("#model-b"), "single"]]) {
    select.replaceChildren(...body.data.map((m) => el("option", { value: m.id }, `${m.id} (${m.kind})`)));
    const pick = body.data.find((m) => m.kind === preferred);
    if (pick) select.value = pick.id;
  }
}

function candidatesView(blend) {
  const rows = (blend.candidates || []).map((c) => [el("span", {}, `${c.member} #${c.sample}`),
    c.score === null ? "–" : num(c.score, 4), c.rank === null ? "–" : c.rank, sec(c.latency_s),
    el("details", {}, el("summary", {}, c.text.slice(0, 60)), el("div", { class: "text" }, c.text))]);
  return table(["member", "score", "rank", "latency", "text"], rows);
}

async function streamAnswer(side, model, prompt) {
  const box = $(`#answer-${side}`);
  box.classList.remove("error");
  $(".name", box).textContent = `${side.toUpperCase()}: ${model}`;
  const text = $(".text", box), meta = $(".meta", box), details = $(".candidates", box);
  text.textContent = ""; meta.textContent = "…"; details.hidden = true;
  const started = performance.now();
  const response = await fetch("/v1/chat/completions", {
    method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ model, stream: true, stream_options: { include_usage: true },
      messages: [{ role: "user", content: prompt }], blend: { return_candidates: true } }),
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", id = null, usage = null, blend = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, cut).trim();
      buffer = buffer.slice(cut + 1);
      if (!line.startsWith("data:")) continue;
      const data = line.slice(5).trim();
      if (data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      id = chunk.id || id;
      for (const choice of chunk.choices || []) {
        if (choice.index === 0 && choice.delta && choice.delta.content) text.append(choice.delta.content);
      }
      if (chunk.usage) usage = chunk.usage;
      if (chunk.blend) blend = chunk.blend;
    }
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  meta.textContent = `${seconds} s` + (usage ? `, ${usage.completion_tokens} tokens` : "") +
    (blend && blend.experiment ? `, arm ${blend.experiment.arm}` : "");
  if (blend && blend.candidates && blend.candidates.length) {
    $(".body", details).replaceChildren(candidatesView(blend));
    details.hidden = false;
  }
  box.dataset.completionId = id;
  return { id, model };
}

function setVoting(enabled) {
  for (const button of document.querySelectorAll("#votes button")) button.disabled = !enabled;
}

async function send() {
  const prompt = $("#prompt").value.trim();
  if (!prompt) return;
  setVoting(false);
  $("#vote-status").textContent = "";
  $("#send").disabled = true;
  const sides = [["a", $("#model-a").value], ["b", $("#model-b").value]];
  const results = await Promise.allSettled(sides.map(([side, model]) => streamAnswer(side, model, prompt)));
  results.forEach((result, i) => {
    const side = sides[i][0];
    answers[side] = result.status === "fulfilled" ? result.value : null;
    if (result.status === "rejected") {
      const box = $(`#answer-${side}`);
      box.classList.add("error");
      $(".text", box).textContent = result.reason.message;
      $(".meta", box).textContent = "";
    }
  });
  $("#send").disabled = false;
  setVoting(Boolean(answers.a && answers.b));
}

async function vote(choice) {
  // A preference becomes thumbs up / down on the two answers; a tie, a middle rating on both.
  const votes = choice === "tie" ? [[answers.a, { rating: 3 }], [answers.b, { rating: 3 }]]
    : [[answers.a, { thumbs: choice === "a" ? "up" : "down" }],
       [answers.b, { thumbs: choice === "b" ? "up" : "down" }]];
  setVoting(false);
  try {
    for (const [answer, fields] of votes) {
      await api("/v1/feedback", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ id: answer.id, ...fields }) });
    }
    $("#vote-status").textContent = "Vote counted.";
    setTimeout(loadDashboard, 800);  // the store writes in batches, within a second
  } catch (error) {
    $("#vote-status").textContent = `Vote not counted: ${error.message}`;
    setVoting(true);
  }
}

$("#send").addEventListener("click", send);
$("#refresh").addEventListener("click", loadDashboard);
for (const button of document.querySelectorAll("#votes button")) {
  button.addEventListener("click", () => vote(button.dataset.vote));
}
loadModels().catch((error) => { $("#vote-status").textContent = `Models unavailable: ${error.message}`; });
loadDashboard();
