// Prism's web UI, the Ask mode: a question in, an answer streamed from POST /v1/answer, with citation
// chips. A chip (or a [n] in the answer) opens its source: a document chunk's text, the picture, or the
// recording playing from the cited second. Helpers come from app.js (window.PrismUI).
"use strict";

(() => {
  const ui = window.PrismUI;
  const { $, el, show } = ui;
  const PREFS_KEYS = { topK: "askTopK", threshold: "askThreshold", rerank: "askRerank" };
  const CITATION = /\[(\d+(?:\s*[,;]\s*\d+)*)\]/g;
  let controller = null;

  function options() {
    const topK = Math.round(Number($("#ask-top-k").value));
    const threshold = Number($("#ask-threshold").value);
    return {
      top_k: Number.isFinite(topK) ? Math.min(50, Math.max(1, topK)) : 5,
      min_score: Number.isFinite(threshold) ? threshold : 0.3,
      rerank: $("#ask-rerank").checked,
    };
  }

  // Server-sent events from a fetch body: calls onEvent(name, data) for each complete event.
  async function readEvents(response, onEvent) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data.push(line.slice(6));
        }
        if (data.length) onEvent(name, JSON.parse(data.join("\n")));
      }
    }
  }

  async function post(body, signal) {
    return ui.withKey(async () => {
      try {
        return await fetch(ui.apiUrl("/v1/answer"), {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...ui.authHeaders() },
          body: JSON.stringify(body),
          signal,
        });
      } catch (error) {
        if (error.name === "AbortError") throw error;
        throw new ui.ApiError(0, "network", "the server did not answer; is it running?");
      }
    }, () => "asking needs it too");
  }

  async function ask(event) {
    if (event) event.preventDefault();
    const question = $("#question").value.trim();
    if (!question) {
      $("#ask-status").textContent = "Type a question first.";
      return;
    }
    if (controller) controller.abort();
    const current = new AbortController();
    controller = current;
    const text = $("#answer-text");
    show($("#ask-error"), "");
    $("#answer").hidden = false;
    text.textContent = "";
    text.className = "answer-text writing";
    $("#citations").replaceChildren();
    $("#citations-heading").hidden = true;
    $("#answer-meta").replaceChildren();
    $("#ask-status").textContent = "Looking for sources…";
    const body = { query: { text: question }, collection: ui.collection(), stream: true, ...options() };
    try {
      const response = await post(body, current.signal);
      if (!response.ok) throw ui.errorFrom(response.status, ui.parseJson(await response.text()));
      let written = "";
      await readEvents(response, (name, data) => {
        if (current !== controller) return;
        if (name === "token") {
          if (!written) $("#ask-status").textContent = "Writing the answer…";
          written += data.text;
          text.textContent = written;
        } else if (name === "answer") {
          renderAnswer(data);
        } else if (name === "error") {
          throw ui.errorFrom(500, data);
        }
      });
    } catch (error) {
      if (error.name === "AbortError" || current !== controller) return;
      text.className = "answer-text";
      $("#ask-status").textContent = "";
      show($("#ask-error"), ui.describe(error));
    }
  }

  function renderAnswer(data) {
    const text = $("#answer-text");
    const byNumber = new Map(data.used_context.map((source) => [source.n, source]));
    text.className = data.nothing_found ? "answer-text nothing-found" : "answer-text";
    text.replaceChildren(...withCitationButtons(data.answer, byNumber));
    // Every source given to the model: the cited ones first, in the order the answer cites them.
    const citedNumbers = new Set(data.citations.map((source) => source.n));
    const sources = [...data.citations, ...data.used_context.filter((source) => !citedNumbers.has(source.n))];
    $("#citations").replaceChildren(...sources.map((source) => el("li", {}, chip(source, citedNumbers.has(source.n)))));
    $("#citations-heading").hidden = !sources.length;
    $("#citations-heading").textContent = `Sources (${data.citations.length} cited)`;
    const timings = data.timings_ms || {};
    $("#answer-meta").replaceChildren(
      el("strong", { class: "total" }, `Total ${ui.formatMs(timings.total || 0)}`),
      ...["transcribe", "retrieve", "rerank", "first_token", "generate"]
        .filter((stage) => timings[stage] !== undefined)
        .map((stage) => el("span", { class: "stage" }, `${stage.replace("_", " ")} ${ui.formatMs(timings[stage])}`)),
      data.model ? el("span", { class: "stage" }, `by ${data.model}`) : null,
    );
    $("#ask-status").textContent = data.nothing_found
      ? "Nothing relevant was found: the model was not asked."
      : `Answered from ${ui.plural(data.used_context.length, ["source", "sources"])}, ${data.citations.length} cited.`;
  }

  // The answer's text with each [n] that names a source turned into a button that opens it.
  function withCitationButtons(answer, byNumber) {
    const parts = [];
    let last = 0;
    for (const match of answer.matchAll(CITATION)) {
      const numbers = match[1].split(/[,;]/).map((n) => Number(n.trim()));
      if (!numbers.some((n) => byNumber.has(n))) continue;
      parts.push(answer.slice(last, match.index));
      for (const n of numbers) {
        const source = byNumber.get(n);
        parts.push(source ? el("button", { type: "button", class: "cite", title: source.label, "aria-label": `Source ${n}: ${source.label}`, onclick: () => openSource(source) }, `[${n}]`) : `[${n}]`);
      }
      last = match.index + match[0].length;
    }
    parts.push(answer.slice(last));
    return parts;
  }

  function chip(source, cited) {
    const kind = { text: "text", image: "picture", audio: "audio" }[source.modality] || source.modality;
    return el(
      "button",
      {
        type: "button",
        class: cited ? "chip citation cited" : "chip citation unused",
        dataset: { n: source.n, modality: source.modality, id: source.id },
        title: cited ? source.label : `${source.label} (given to the model, not cited)`,
        onclick: () => openSource(source),
      },
      el("span", { class: `badge ${source.modality}` }, kind),
      `[${source.n}] ${source.title || source.source || source.doc_id}`,
    );
  }

  function openSource(source) {
    if (source.modality === "image") {
      ui.openViewer({ ...source, caption: source.text });
      return;
    }
    const dialog = $("#source-dialog");
    $("#source-title").textContent = `[${source.n}] ${source.title || source.source || source.doc_id}`;
    $("#source-label").textContent = source.label;
    const body = $("#source-body");
    if (source.modality === "audio") {
      const row = ui.renderAudio(source, null);
      body.replaceChildren(row);
      dialog.showModal();
      row.querySelector("button.play").click(); // play from the cited second
    } else {
      body.replaceChildren(el("p", { class: "source-text" }, source.text));
      dialog.showModal();
    }
    $("#source-close").focus();
  }

  function closeSource() {
    for (const player of $("#source-body").querySelectorAll("audio")) player.pause();
    $("#source-dialog").close();
  }

  function start() {
    const prefs = ui.loadPrefs();
    if (prefs[PREFS_KEYS.topK] !== undefined) $("#ask-top-k").value = prefs[PREFS_KEYS.topK];
    if (prefs[PREFS_KEYS.threshold] !== undefined) $("#ask-threshold").value = prefs[PREFS_KEYS.threshold];
    if (prefs[PREFS_KEYS.rerank] !== undefined) $("#ask-rerank").checked = prefs[PREFS_KEYS.rerank];
    $("#ask-form").addEventListener("submit", ask);
    $("#ask-top-k").addEventListener("change", () => ui.savePrefs({ [PREFS_KEYS.topK]: $("#ask-top-k").value }));
    $("#ask-threshold").addEventListener("change", () => ui.savePrefs({ [PREFS_KEYS.threshold]: $("#ask-threshold").value }));
    $("#ask-rerank").addEventListener("change", () => ui.savePrefs({ [PREFS_KEYS.rerank]: $("#ask-rerank").checked }));
    $("#source-close").addEventListener("click", closeSource);
    $("#source-dialog").addEventListener("close", () => {
      for (const player of $("#source-body").querySelectorAll("audio")) player.pause();
    });
    $("#source-dialog").addEventListener("click", (event) => {
      if (event.target === $("#source-dialog")) closeSource(); // a click on the backdrop
    });
  }

  start();
})();
