// Prism's web UI: search and manage a library through the /v1 API. Plain JavaScript, no build step.
"use strict";

(() => {
  const $ = (selector) => document.querySelector(selector);
  const $$ = (selector) => Array.from(document.querySelectorAll(selector));

  const KEY_STORE = "prism.apiKey"; // sessionStorage only: the key lives as long as the tab
  const PREFS = "prism.prefs"; // localStorage: threshold, collection, toggles (nothing secret)
  const ITEMS_PAGE = 20;
  const JOB_POLL_MS = 750;

  const DOC_EXTENSIONS = ["txt", "md", "markdown", "pdf"];
  const IMAGE_EXTENSIONS = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"];
  const AUDIO_EXTENSIONS = ["wav", "flac", "mp3", "ogg", "oga", "opus", "m4a", "aac", "webm"];
  // Not worth marking in a passage.
  const STOP_WORDS = new Set(
    "the and for are but not you all any can her was one our out has have had this that with from they them then than there their what when where which who why how does did into onto about over under your its".split(" "),
  );
  const KINDS = {
    documents: { path: "/v1/documents/upload", label: "Documents", noun: ["document", "documents"] },
    images: { path: "/v1/images", label: "Pictures", noun: ["picture", "pictures"] },
    audio: { path: "/v1/audio", label: "Recordings", noun: ["recording", "recordings"] },
  };

  // ------------------------------------------------------------------ helpers

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (value === true) node.setAttribute(name, "");
      else node.setAttribute(name, String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const plural = (count, [one, many]) => `${count} ${count === 1 ? one : many}`;
  const extension = (name) => (name.includes(".") ? name.split(".").pop().toLowerCase() : "");
  const formatScore = (value) => (value === null || value === undefined ? "" : Number(value).toFixed(4));
  const modalityLabel = (modality) => ({ text: "text", image: "picture", audio: "audio" })[modality] || modality;
  const formatMs = (ms) => (ms >= 100 ? `${Math.round(ms)} ms` : `${Number(ms).toFixed(1)} ms`);

  function formatTime(seconds) {
    const whole = Math.max(0, Math.floor(seconds || 0));
    const h = Math.floor(whole / 3600);
    const m = Math.floor((whole % 3600) / 60);
    const s = String(whole % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
  }

  function formatBytes(bytes) {
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  }

  function show(node, message) {
    node.textContent = message || "";
    node.hidden = !message;
  }

  function loadPrefs() {
    try {
      return JSON.parse(localStorage.getItem(PREFS) || "{}") || {};
    } catch {
      return {};
    }
  }

  function savePrefs(changes) {
    try {
      localStorage.setItem(PREFS, JSON.stringify({ ...loadPrefs(), ...changes }));
    } catch {
      /* private mode: preferences are not remembered */
    }
  }

  // URLs are resolved against the page, so the UI also works behind a proxy that serves Prism under
  // a path prefix; the API's own links ("/v1/items/...") are made relative the same way.
  const apiUrl = (path) => new URL(String(path).replace(/^\/+/, ""), document.baseURI).href;

  // ------------------------------------------------------------------ the API, with the key

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function errorFrom(status, data, fallback) {
    const error = data && typeof data === "object" ? data.error : null;
    if (error && error.message) return new ApiError(status, error.code || "error", error.message);
    return new ApiError(status, "http_error", fallback || `the server answered ${status}`);
  }

  // An API error in plain words: what went wrong, then the server's own message.
  function describe(error) {
    if (!(error instanceof ApiError)) return `Something went wrong: ${error && error.message ? error.message : error}`;
    const message = error.message;
    switch (error.status) {
      case 0:
        return `Cannot reach the server: ${message}`;
      case 400:
        return `Rejected: ${message}`;
      case 401:
        return `Not authorised: ${message}`;
      case 404:
        return `Not found: ${message}`;
      case 413:
        return `Too large: ${message}`;
      case 415:
        return `Unsupported file type: ${message}`;
      case 422:
        return `The request was not understood: ${message}`;
      case 503:
        if (error.code === "modality_unavailable") return `Model unavailable: ${message}`;
        if (error.code === "not_ready") return `The server is not ready yet: ${message}`;
        if (error.code === "overloaded") return `The server is busy, try again shortly: ${message}`;
        return `Unavailable: ${message}`;
      default:
        return `Server error (${error.status}): ${message}`;
    }
  }

  const apiKey = () => sessionStorage.getItem(KEY_STORE);

  function authHeaders() {
    const key = apiKey();
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  function parseJson(text) {
    try {
      return text ? JSON.parse(text) : null;
    } catch {
      return null;
    }
  }

  // One key prompt at a time: every request that got a 401 waits for the same answer.
  let keyRequest = null;

  function askForKey(reason) {
    if (keyRequest) return keyRequest.promise;
    const dialog = $("#key-dialog");
    const input = $("#api-key");
    let resolve;
    let reject;
    const promise = new Promise((yes, no) => {
      resolve = yes;
      reject = no;
    });
    keyRequest = { promise, resolve, reject };
    $("#key-reason").textContent = apiKey()
      ? `The server refused this key (${reason}). Enter another one.`
      : `This server needs an API key (${reason}).`;
    input.value = "";
    if (!dialog.open) dialog.showModal();
    input.focus();
    return promise;
  }

  function finishKeyRequest(key) {
    const request = keyRequest;
    keyRequest = null;
    const dialog = $("#key-dialog");
    if (dialog.open) dialog.close();
    if (!request) return;
    if (key) {
      sessionStorage.setItem(KEY_STORE, key);
      updateKeyButton();
      request.resolve();
    } else {
      request.reject(new ApiError(401, "unauthorized", "an API key is needed, and none was given"));
    }
  }

  function updateKeyButton() {
    $("#forget-key").hidden = !apiKey();
  }

  // Makes a request with `attempt()` until the server stops answering 401, asking the person for a
  // key in between (the same request again, with the key); `why(answer)` says why it is needed.
  async function withKey(attempt, why) {
    for (;;) {
      const answer = await attempt();
      if (answer.status !== 401) return answer;
      await askForKey(why(answer));
    }
  }

  async function api(method, path, { json, form, signal } = {}) {
    const { status, data } = await withKey(async () => {
      const headers = { Accept: "application/json", ...authHeaders() };
      let body;
      if (json !== undefined) {
        headers["Content-Type"] = "application/json";
        body = JSON.stringify(json);
      } else if (form) {
        body = form;
      }
      let response;
      try {
        response = await fetch(apiUrl(path), { method, headers, body, signal });
      } catch (error) {
        if (error.name === "AbortError") throw error;
        throw new ApiError(0, "network", "the server did not answer; is it running?");
      }
      return { status: response.status, data: parseJson(await response.text()) };
    }, (answer) => errorFrom(401, answer.data).message);
    if (status < 200 || status >= 300) throw errorFrom(status, data);
    return { status, data };
  }

  // XMLHttpRequest rather than fetch: it reports upload progress.
  function send(path, form, onProgress) {
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open("POST", apiUrl(path));
      request.setRequestHeader("Accept", "application/json");
      for (const [name, value] of Object.entries(authHeaders())) request.setRequestHeader(name, value);
      request.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) onProgress("upload", event.loaded / event.total);
      });
      request.upload.addEventListener("load", () => onProgress("processing", null));
      request.addEventListener("load", () => resolve({ status: request.status, data: parseJson(request.responseText) }));
      request.addEventListener("error", () => reject(new ApiError(0, "network", "the upload was interrupted")));
      request.send(form);
    });
  }

  async function upload(path, makeForm, onProgress) {
    const { status, data } = await withKey(() => send(path, makeForm(), onProgress), (answer) => errorFrom(401, answer.data).message);
    if (status >= 400 || status === 0) throw errorFrom(status, data);
    return { status, data };
  }

  // Pictures and recordings: <img> and <audio> cannot send a header, so with a key they are
  // fetched with it and shown from blob: URLs. Without a key the browser loads them directly
  // (recordings then stream with HTTP Range).
  const blobCache = new Map();

  function blobUrl(path) {
    if (!blobCache.has(path)) {
      const promise = (async () => {
        const response = await withKey(() => fetch(apiUrl(path), { headers: authHeaders() }), () => "pictures and recordings need it too");
        if (!response.ok) throw errorFrom(response.status, parseJson(await response.text()));
        return URL.createObjectURL(await response.blob());
      })();
      promise.catch(() => blobCache.delete(path));
      blobCache.set(path, promise);
    }
    return blobCache.get(path);
  }

  function setMediaSource(node, path) {
    if (!apiKey()) {
      node.src = apiUrl(path);
      return Promise.resolve();
    }
    return blobUrl(path).then((url) => {
      node.src = url;
    });
  }

  // ------------------------------------------------------------------ tabs and collection

  function selectTab(name, { focus = false } = {}) {
    for (const tab of $$('[role="tab"]')) {
      const selected = tab.id === `tab-${name}`;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
      $(`#${tab.getAttribute("aria-controls")}`).hidden = !selected;
      if (selected && focus) tab.focus();
    }
    if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
    if (name === "library") loadItems();
  }

  const TABS = ["search", "ask", "library"];

  function currentTab() {
    const selected = $('[role="tab"][aria-selected="true"]');
    return selected ? selected.id.replace("tab-", "") : "search";
  }

  function tabOfHash() {
    const name = location.hash.replace("#", "");
    return TABS.includes(name) ? name : "search";
  }

  function collection() {
    return $("#collection").value.trim() || "default";
  }

  let knownCollections = [];

  async function loadCollections() {
    try {
      const { data } = await api("GET", "/v1/collections");
      knownCollections = data.collections;
    } catch (error) {
      notice("collections", describe(error), "error");
      return;
    }
    notice("collections", "");
    const list = $("#collection-names");
    list.replaceChildren(...knownCollections.map((c) => el("option", { value: c.name, label: `${plural(c.items, ["item", "items"])}` })));
    const current = collection();
    $("#collections").replaceChildren(
      ...knownCollections.map((c) =>
        el(
          "li",
          {},
          el(
            "button",
            {
              type: "button",
              class: c.name === current ? "chip current" : "chip",
              "aria-pressed": String(c.name === current),
              onclick: () => pickCollection(c.name),
            },
            c.name,
            el("span", { class: "count" }, ` ${c.items}`),
          ),
        ),
      ),
    );
    if (!knownCollections.length) $("#collections").append(el("li", { class: "muted" }, "No collections yet: add text or files to create one."));
  }

  function pickCollection(name) {
    $("#collection").value = name;
    collectionChanged();
  }

  function collectionChanged() {
    savePrefs({ collection: collection() });
    $("#items-collection").textContent = collection();
    itemsOffset = 0;
    for (const chip of $$("#collections .chip")) {
      const current = chip.firstChild.textContent === collection();
      chip.classList.toggle("current", current);
      chip.setAttribute("aria-pressed", String(current));
    }
    if (currentTab() === "library") loadItems();
  }

  // ------------------------------------------------------------------ notices and models

  const notices = new Map();

  function notice(key, message, kind = "info") {
    if (message) notices.set(key, { message, kind });
    else notices.delete(key);
    $("#notices").replaceChildren(...Array.from(notices.values(), (n) => el("p", { class: `notice ${n.kind}` }, n.message)));
  }

  let waitedForModels = false;

  async function loadInfo() {
    let info;
    try {
      ({ data: info } = await api("GET", "/v1/info"));
    } catch (error) {
      notice("info", describe(error), "error");
      return;
    }
    if (!info.ready) {
      const retry = info.error ? "" : " This page will check again.";
      notice("info", `The server is not ready${info.error ? `: ${info.error}` : ": it is still loading its models."}${retry}`, "warning");
      if (!info.error) setTimeout(loadInfo, 3000);
      waitedForModels = true;
      return;
    }
    notice("info", "");
    if (waitedForModels) {
      waitedForModels = false;
      libraryChanged(); // what failed while the models loaded
    }
    const models = info.models || {};
    const parts = [];
    if (models.text) parts.push(`Text: ${models.text.name}`);
    for (const [key, label, missing] of [
      ["image", "Pictures", "Pictures cannot be added or searched for"],
      ["audio", "Audio", "Recordings cannot be added, and clips cannot be searched by"],
      ["rerank", "Reranker", null],
    ]) {
      const model = models[key];
      if (!model) continue;
      parts.push(model.available ? `${label}: ${model.name}` : `${label}: unavailable`);
      if (!model.available && missing) notice(`model-${key}`, `${missing}: ${model.error || "no model is loaded"}`, "warning");
    }
    // Options that cannot run are disabled, with the reason as their tooltip.
    const unavailable = (model, why) => (model && !model.available ? `${why}${model.error ? ` (${model.error})` : ""}` : null);
    const noReranker = unavailable(models.rerank, "No reranker is loaded");
    for (const box of [$("#rerank"), $("#ask-rerank")]) disableOption(box, noReranker);
    disableOption($('input[name="modality"][value="image"]'), unavailable(models.image, "Pictures cannot be searched: no CLIP model is loaded"));
    $("#models").textContent = `${parts.join(" · ")} · Prism ${info.version} ·`;
  }

  function disableOption(box, reason) {
    const label = box.closest("label");
    if (reason) box.checked = false;
    box.disabled = Boolean(reason);
    label.classList.toggle("unavailable", Boolean(reason));
    if (reason) label.title = reason;
    else label.removeAttribute("title");
  }

  // ------------------------------------------------------------------ search

  let example = null; // the file to search by, when searching by example
  let searchController = null;
  let exampleUrl = null;

  function setExample(file) {
    example = file;
    if (exampleUrl) URL.revokeObjectURL(exampleUrl);
    exampleUrl = null;
    const image = $("#example-image");
    image.hidden = true;
    image.removeAttribute("src");
    $("#example").hidden = !file;
    if (!file) {
      $("#query-file").value = "";
      return;
    }
    const picture = file.type.startsWith("image/") || IMAGE_EXTENSIONS.includes(extension(file.name));
    $("#example-name").textContent = `${picture ? "Picture" : "Clip"}: ${file.name}`;
    if (picture) {
      exampleUrl = URL.createObjectURL(file);
      image.src = exampleUrl;
      image.alt = `The picture searched by: ${file.name}`;
      image.hidden = false;
    }
    $("#query").value = "";
  }

  function modalities() {
    return $$('input[name="modality"]:checked').map((box) => box.value);
  }

  function topK() {
    const value = Math.round(Number($("#top-k").value));
    return Number.isFinite(value) ? Math.min(1000, Math.max(1, value)) : 10;
  }

  function threshold() {
    const value = Number($("#threshold").value);
    return Number.isFinite(value) ? value : 0;
  }

  function clearResults() {
    $("#results").replaceChildren();
    $("#search-summary").hidden = true;
    show($("#search-error"), "");
    $("#search-status").textContent = "";
    for (const promise of blobCache.values()) promise.then((url) => URL.revokeObjectURL(url), () => {});
    blobCache.clear();
  }

  function clearSearch() {
    if (searchController) searchController.abort();
    $("#query").value = "";
    setExample(null);
    clearResults();
    $("#query").focus();
  }

  async function search() {
    const chosen = modalities();
    const text = $("#query").value.trim();
    if (!chosen.length) {
      show($("#search-error"), "Choose at least one kind of result to show: text, pictures or audio.");
      return;
    }
    if (!text && !example) {
      clearResults();
      $("#search-status").textContent = "Type something to search for, or drop a picture or an audio clip.";
      return;
    }
    if (searchController) searchController.abort();
    const controller = new AbortController();
    searchController = controller;
    show($("#search-error"), "");
    $("#search-status").textContent = example ? `Searching by ${example.name}…` : "Searching…";
    $("#results").setAttribute("aria-busy", "true");
    const options = { collection: collection(), top_k: topK(), rerank: $("#rerank").checked };
    try {
      let answer;
      if (example) {
        const form = new FormData();
        form.append("file", example, example.name);
        form.append("collection", options.collection);
        form.append("top_k", String(options.top_k));
        form.append("modalities", chosen.join(","));
        form.append("rerank", String(options.rerank));
        answer = await api("POST", "/v1/search/upload", { form, signal: controller.signal });
      } else {
        answer = await api("POST", "/v1/search", { json: { query: { text }, modalities: chosen, ...options }, signal: controller.signal });
      }
      if (controller !== searchController) return;
      clearResults();
      renderResults(answer.data, example ? null : text);
    } catch (error) {
      if (error.name === "AbortError" || controller !== searchController) return;
      clearResults();
      show($("#search-error"), describe(error));
    } finally {
      if (controller === searchController) $("#results").removeAttribute("aria-busy");
    }
  }

  function renderResults(data, text) {
    const results = data.results || [];
    $("#search-status").textContent = results.length
      ? `${plural(results.length, ["result", "results"])} in “${collection()}”.`
      : `Nothing found in “${collection()}”.`;
    const transcript = $("#transcript");
    transcript.hidden = !data.transcript;
    if (data.transcript) transcript.textContent = `Heard: “${data.transcript.text}” (${data.transcript.language})`;
    const timings = data.timings_ms || {};
    const stages = Object.entries(timings).filter(([stage]) => stage !== "total");
    $("#timings").replaceChildren(
      el("strong", { class: "total" }, `Total ${formatMs(timings.total || 0)}`),
      ...stages.map(([stage, ms]) => el("span", { class: "stage" }, `${stage} ${formatMs(ms)}`)),
    );
    const skipped = Object.entries((data.routes && data.routes.skipped) || {}).map(([route, why]) => `${route} skipped: ${why}`);
    if (data.rerank && data.rerank.skipped) skipped.push(`Reranking skipped: ${data.rerank.skipped}`);
    if (data.rerank && data.rerank.applied) skipped.unshift(`Reranked by ${data.rerank.model}.`);
    show($("#skipped"), skipped.join(" · "));
    $("#search-summary").hidden = false;
    $("#results").replaceChildren(...groupByDocument(results).map((group) => renderHit(group, text)));
    applyThreshold();
  }

  // The chunks of one text document found together are shown as one result, where its best chunk
  // ranks, with its passages in the document's order. Pictures and recordings' moments stay apart.
  function groupByDocument(results) {
    const groups = [];
    const byDocument = new Map();
    results.forEach((hit, index) => {
      const key = hit.modality === "text" ? `${hit.collection}\u0000${hit.doc_id}` : null;
      if (key !== null && byDocument.has(key)) {
        byDocument.get(key).chunks.push(hit);
        return;
      }
      const group = { best: hit, rank: index + 1, chunks: [hit] };
      groups.push(group);
      if (key !== null) byDocument.set(key, group);
    });
    for (const group of groups) group.chunks.sort((a, b) => (a.position ?? 0) - (b.position ?? 0));
    return groups;
  }

  // What the threshold is compared with: the reranker's judgement when there is one, else the best
  // cosine similarity among the routes that found the result (fused RRF scores are not on that scale).
  function relevance(hit) {
    if (hit.rerank_score !== null && hit.rerank_score !== undefined) return hit.rerank_score;
    const cosines = Object.values(hit.routes || {}).map((route) => route.score);
    return cosines.length ? Math.max(...cosines) : hit.score;
  }

  // Results that reach the threshold are highlighted and listed first, each group in the fused order:
  // a greyed result never sits above a highlighted one.
  function applyThreshold() {
    const limit = threshold();
    const items = $$("#results > li").sort((a, b) => Number(a.dataset.rank) - Number(b.dataset.rank));
    for (const item of items) {
      const relevant = Number(item.dataset.relevance) >= limit;
      item.classList.toggle("relevant", relevant);
      item.classList.toggle("faint", !relevant);
    }
    const order = [...items.filter((item) => item.classList.contains("relevant")), ...items.filter((item) => !item.classList.contains("relevant"))];
    const current = $$("#results > li");
    if (order.some((item, index) => item !== current[index])) $("#results").replaceChildren(...order); // moving a node pauses its player
  }

  const RELEVANCE_TIP =
    "Relevance: the reranker's score when the results were reranked, else the best cosine similarity among the routes that found it. " +
    "Results reaching the threshold are highlighted and listed first; each group keeps the order of the fused ranking of all routes.";

  function titleOf(hit) {
    return hit.title || hit.source || hit.doc_id;
  }

  function renderHit(group, text) {
    const hit = group.best;
    const value = Math.max(...group.chunks.map(relevance));
    const reranked = hit.rerank_score !== null && hit.rerank_score !== undefined;
    const detail = ` This one: fused rank ${group.rank}, fused score ${formatScore(hit.score)}${reranked ? ", reranked" : ""}.`;
    const scores = el("span", { class: "scores" }, el("span", { class: "relevance", title: RELEVANCE_TIP + detail }, `relevance ${formatScore(value)}`));
    const routes = Object.entries(hit.routes || {})
      .map(([route, found]) => `${route} #${found.rank}`)
      .join(", ");
    const source = hit.source && hit.source !== titleOf(hit) ? el("span", { class: "result-source", title: "Where it came from" }, hit.source) : null;
    const head = el(
      "div",
      { class: "result-head" },
      el("span", { class: `badge ${hit.modality}` }, modalityLabel(hit.modality)),
      el("span", { class: "result-title" }, titleOf(hit)),
      source,
      scores,
    );
    const item = el("li", {
      class: `result ${hit.modality}`,
      dataset: { id: hit.id, docId: hit.doc_id, modality: hit.modality, score: hit.score, relevance: value, rank: group.rank, chunks: group.chunks.length },
    });
    item.append(head);
    if (hit.modality === "image") item.append(renderPicture(hit));
    else if (hit.modality === "audio") item.append(renderAudio(hit, text));
    else for (const chunk of group.chunks) item.append(el("p", { class: "passage", dataset: { id: chunk.id, position: chunk.position ?? 0 } }, highlight(chunk.text, text)));
    if (routes) item.append(el("p", { class: "routes" }, `Found by ${routes}`));
    return item;
  }

  // The query's words marked in a passage, built as text nodes (never HTML from the server).
  function highlight(passage, query) {
    const words = (query || "")
      .toLowerCase()
      .split(/[^\p{L}\p{N}]+/u)
      .filter((word) => word.length > 2 && !STOP_WORDS.has(word));
    if (!words.length) return [passage];
    const pattern = new RegExp(`(${words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")})`, "giu");
    return passage.split(pattern).map((part, i) => (i % 2 ? el("mark", {}, part) : part));
  }

  function renderPicture(hit) {
    const caption = hit.caption || "";
    const alt = caption || `Picture ${hit.source || hit.doc_id}`;
    const image = el("img", { class: "thumbnail", alt, loading: "lazy", decoding: "async" });
    setMediaSource(image, hit.thumbnail_url).catch(() => image.classList.add("broken"));
    const link = el(
      "a",
      {
        class: "picture",
        href: apiUrl(hit.content_url),
        target: "_blank",
        rel: "noopener",
        title: "Open the full picture",
        onclick: (event) => {
          if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
          event.preventDefault();
          openViewer(hit);
        },
      },
      image,
    );
    const size = hit.width && hit.height ? `${hit.width} × ${hit.height}` : "";
    return el(
      "div",
      { class: "picture-row" },
      link,
      el("div", { class: "picture-text" }, caption ? el("p", { class: "caption" }, caption) : el("p", { class: "muted" }, "No caption"), size ? el("p", { class: "muted" }, size) : null),
    );
  }

  function openViewer(hit) {
    const viewer = $("#viewer");
    const image = $("#viewer-image");
    image.removeAttribute("src");
    image.alt = hit.caption || `Picture ${hit.source || hit.doc_id}`;
    $("#viewer-caption").textContent = [hit.caption, hit.source].filter(Boolean).join(" · ");
    $("#viewer-link").href = apiUrl(hit.content_url);
    setMediaSource(image, hit.content_url).catch((error) => ($("#viewer-caption").textContent = describe(error)));
    viewer.showModal();
    $("#viewer-close").focus();
  }

  function renderAudio(hit, text) {
    const start = Number(hit.start) || 0;
    const end = Number(hit.end) || start;
    const player = el("audio", { controls: true, preload: "metadata", dataset: { start } });
    player.append("Your browser cannot play this recording.");
    if (!apiKey()) player.src = apiUrl(hit.content_url); // content_url ends in #t=<start>
    player.addEventListener("loadedmetadata", () => {
      if (Math.abs(player.currentTime - start) > 0.25) player.currentTime = start; // where #t= is not honoured
    });
    const problem = el("p", { class: "error", role: "alert", hidden: true });
    const play = el(
      "button",
      {
        type: "button",
        class: "play",
        "aria-label": `Play ${titleOf(hit)} from ${formatTime(start)}`,
        onclick: async () => {
          show(problem, "");
          try {
            if (!player.currentSrc) {
              await setMediaSource(player, hit.content_url.split("#")[0]);
              player.load();
            }
            if (player.readyState < 1) await new Promise((resolve) => player.addEventListener("loadedmetadata", resolve, { once: true }));
            player.currentTime = start;
            await player.play();
          } catch (error) {
            show(problem, error instanceof ApiError ? describe(error) : `Cannot play this recording: ${error.message}`);
          }
        },
      },
      `▶ Play from ${formatTime(start)}`,
    );
    return el(
      "div",
      { class: "audio-row" },
      el("p", { class: "segment" }, el("span", { class: "span" }, `${formatTime(start)}–${formatTime(end)} `), highlight(hit.text, text)),
      el("div", { class: "player" }, play, player),
      problem,
    );
  }

  // ------------------------------------------------------------------ library: lines

  async function addLines(event) {
    event.preventDefault();
    const lines = $("#lines")
      .value.split(/\r?\n/)
      .map((line) => line.trim())
      .filter(Boolean);
    const status = $("#lines-status");
    show($("#lines-error"), "");
    if (!lines.length) {
      status.textContent = "Nothing to add: type one document per line.";
      return;
    }
    const button = $("#add-lines");
    button.disabled = true;
    status.textContent = `Adding ${plural(lines.length, ["document", "documents"])}…`;
    try {
      const name = collection();
      const { data } = await api("POST", "/v1/documents", { json: { collection: name, documents: lines.map((text) => ({ text })) } });
      status.textContent = `Added ${plural(data.ids.length, ["document", "documents"])} to “${name}” (${plural(data.chunks, ["chunk", "chunks"])}).`;
      $("#lines").value = "";
      libraryChanged();
    } catch (error) {
      status.textContent = "";
      show($("#lines-error"), describe(error));
    } finally {
      button.disabled = false;
    }
  }

  // ------------------------------------------------------------------ library: files

  let pending = []; // {file, kind, caption}

  function kindOf(file) {
    const ext = extension(file.name);
    if (DOC_EXTENSIONS.includes(ext)) return "documents";
    if (IMAGE_EXTENSIONS.includes(ext) || file.type.startsWith("image/")) return "images";
    if (AUDIO_EXTENSIONS.includes(ext) || file.type.startsWith("audio/")) return "audio";
    return "documents"; // the server says in plain words what it does not take
  }

  function addPending(files) {
    for (const file of files) pending.push({ file, kind: kindOf(file), caption: "" });
    renderPending();
  }

  function renderPending() {
    $("#pending").replaceChildren(
      ...pending.map((entry, index) => {
        const id = `caption-${index}`;
        return el(
          "li",
          { class: "pending-file" },
          el("span", { class: `badge ${entry.kind}` }, KINDS[entry.kind].noun[0]),
          el("span", { class: "file-name" }, entry.file.name),
          el("span", { class: "muted" }, formatBytes(entry.file.size)),
          entry.kind === "images"
            ? el(
                "span",
                { class: "caption-field" },
                el("label", { for: id, class: "visually-hidden" }, `Caption for ${entry.file.name}`),
                el("input", {
                  id,
                  type: "text",
                  placeholder: "Caption (optional)",
                  value: entry.caption,
                  oninput: (event) => (entry.caption = event.target.value),
                }),
              )
            : null,
          el(
            "button",
            {
              type: "button",
              class: "quiet",
              "aria-label": `Remove ${entry.file.name}`,
              onclick: () => {
                pending.splice(index, 1);
                renderPending();
              },
            },
            "Remove",
          ),
        );
      }),
    );
    $("#upload-button").disabled = !pending.length;
  }

  async function uploadPending(event) {
    event.preventDefault();
    if (!pending.length) return;
    const name = collection();
    const groups = {};
    for (const entry of pending) (groups[entry.kind] ||= []).push(entry);
    pending = [];
    renderPending();
    $("#upload-files").value = "";
    await Promise.all(Object.entries(groups).map(([kind, entries]) => uploadGroup(kind, entries, name)));
    libraryChanged();
  }

  async function uploadGroup(kind, entries, name) {
    const spec = KINDS[kind];
    const bar = el("progress", { max: 1, value: 0 });
    const message = el("span", { class: "upload-message" }, "Uploading… 0%");
    const error = el("p", { class: "error", role: "alert", hidden: true });
    const row = el(
      "li",
      { class: "upload", dataset: { kind } },
      el("div", { class: "upload-title" }, el("strong", {}, spec.label), ` ${entries.map((e) => e.file.name).join(", ")}`),
      bar,
      message,
      error,
    );
    $("#uploads").prepend(row);
    const progress = (stage, fraction) => {
      if (stage === "upload" && fraction !== null) {
        bar.value = fraction;
        message.textContent = `Uploading… ${Math.round(fraction * 100)}%`;
      } else if (stage === "processing") {
        bar.removeAttribute("value"); // indeterminate while the server works
        message.textContent = kind === "audio" ? "Uploaded; transcribing…" : "Uploaded; processing…";
      }
    };
    const sendEntries = async (some, onProgress) => {
      let { status, data } = await upload(spec.path, () => formOf(kind, some, name), onProgress);
      if (status === 202) {
        row.dataset.job = data.job_id;
        data = await followJob(data, bar, message);
      }
      return data;
    };
    try {
      const data = await sendEntries(entries, progress);
      bar.value = 1;
      row.classList.add("done");
      message.textContent = `Done: ${plural(data.ids.length, spec.noun)} stored in “${name}” (${plural(data.chunks, ["item", "items"])}).`;
    } catch (failure) {
      if (entries.length > 1 && failure instanceof ApiError && REFUSED_FOR_A_FILE.includes(failure.status)) {
        await uploadOneByOne(entries, name, row, bar, message, sendEntries);
        return;
      }
      bar.value = 0;
      row.classList.add("failed");
      message.textContent = "Failed.";
      show(error, describe(failure));
    }
  }

  function formOf(kind, entries, name) {
    const form = new FormData();
    form.append("collection", name);
    for (const entry of entries) form.append("files", entry.file, entry.file.name);
    if (kind === "images") for (const entry of entries) form.append("caption", entry.caption.trim());
    return form;
  }

  // The server stores a batch whole or not at all. When it refuses one for a file's content (a
  // picture that is not one, a file too large, a type it does not read), the files are sent again one
  // by one: the good ones are stored, and each refused one is listed with the server's reason.
  const REFUSED_FOR_A_FILE = [400, 413, 415];

  async function uploadOneByOne(entries, name, row, bar, message, sendEntries) {
    const list = el("ul", { class: "upload-files", "aria-live": "polite" });
    row.append(list);
    let stored = 0;
    for (const [index, entry] of entries.entries()) {
      message.textContent = `A file was refused; sending the files one by one (${index + 1} of ${entries.length})…`;
      bar.value = index / entries.length;
      try {
        await sendEntries([entry], () => {});
        stored += 1;
        list.append(el("li", { class: "stored", dataset: { name: entry.file.name } }, `${entry.file.name}: stored`));
      } catch (failure) {
        list.append(el("li", { class: "refused", dataset: { name: entry.file.name } }, `${entry.file.name}: ${describe(failure)}`));
      }
    }
    bar.value = 1;
    row.classList.add("failed");
    if (stored) row.classList.add("partial");
    const refused = entries.length - stored;
    message.textContent = `Stored ${stored} of ${entries.length} files in “${name}”; ${refused} refused (below).`;
  }

  // A long recording is a background job: poll it and show its progress until it is done.
  async function followJob(accepted, bar, message) {
    const path = accepted.status_url;
    for (;;) {
      const { data: job } = await api("GET", path);
      if (job.state === "succeeded") return job.result;
      if (job.state === "failed") throw new ApiError(400, "job_failed", job.error || job.message || "the job failed");
      bar.value = job.progress;
      const percent = Math.round(job.progress * 100);
      message.textContent = job.state === "queued" ? "Waiting to be transcribed…" : `${job.message || "Working"}… ${percent}%`;
      await new Promise((resolve) => setTimeout(resolve, JOB_POLL_MS));
    }
  }

  function libraryChanged() {
    loadCollections();
    loadItems();
  }

  // ------------------------------------------------------------------ library: items

  let itemsOffset = 0;
  let itemsRequest = 0;

  async function loadItems() {
    const name = collection();
    const request = ++itemsRequest;
    $("#items-collection").textContent = name;
    show($("#items-error"), "");
    $("#items-status").textContent = "Loading…";
    let page;
    try {
      ({ data: page } = await api("GET", `/v1/collections/${encodeURIComponent(name)}/items?limit=${ITEMS_PAGE}&offset=${itemsOffset}`));
    } catch (error) {
      if (request !== itemsRequest) return;
      $("#items").replaceChildren();
      updatePager(0, 0);
      if (error instanceof ApiError && error.status === 404) {
        $("#items-status").textContent = `There is no collection “${name}” yet: add text or files to create it.`;
      } else {
        $("#items-status").textContent = "";
        show($("#items-error"), describe(error));
      }
      return;
    }
    if (request !== itemsRequest) return;
    if (!page.items.length && itemsOffset > 0) {
      itemsOffset = Math.max(0, itemsOffset - ITEMS_PAGE); // the last item of the last page went
      loadItems();
      return;
    }
    const counts = {};
    for (const item of page.items) counts[item.doc_id] = (counts[item.doc_id] || 0) + 1;
    $("#items").replaceChildren(...page.items.map((item) => renderItem(item, counts[item.doc_id] > 1)));
    $("#items-status").textContent = page.total ? `${plural(page.total, ["item", "items"])}, newest first.` : "This collection is empty.";
    updatePager(page.items.length, page.total);
  }

  function updatePager(shown, total) {
    $("#page-info").textContent = total ? `${itemsOffset + 1}–${itemsOffset + shown} of ${total}` : "";
    $("#prev-page").disabled = itemsOffset === 0;
    $("#next-page").disabled = itemsOffset + shown >= total;
  }

  function renderItem(item, shared) {
    const name = item.title || item.source || item.doc_id;
    const parts = [el("span", { class: `badge ${item.modality}` }, modalityLabel(item.modality))];
    const body = el("div", { class: "item-body" }, el("p", { class: "item-title" }, name));
    if (item.modality === "image") {
      const thumbnail = el("img", { class: "thumbnail small", alt: item.caption || `Picture ${item.source || item.doc_id}`, loading: "lazy" });
      setMediaSource(thumbnail, item.thumbnail_url).catch(() => thumbnail.classList.add("broken"));
      parts.push(thumbnail);
      if (item.caption) body.append(el("p", { class: "item-text" }, item.caption));
    } else if (item.modality === "audio") {
      body.append(el("p", { class: "item-text" }, `${formatTime(item.start)}–${formatTime(item.end)} `, item.text));
    } else {
      body.append(el("p", { class: "item-text" }, item.text.length > 240 ? `${item.text.slice(0, 240)}…` : item.text));
    }
    body.append(el("p", { class: "muted" }, new Date(item.created_at).toLocaleString()));
    const actions = el(
      "div",
      { class: "item-actions" },
      el("button", { type: "button", class: "danger", "aria-label": `Delete ${name}`, onclick: () => deleteItem(item) }, "Delete"),
    );
    if (item.modality === "audio" || (item.modality === "text" && (shared || item.position > 0))) {
      const what = item.modality === "audio" ? "recording" : "document";
      actions.append(
        el(
          "button",
          { type: "button", class: "danger quiet", "aria-label": `Delete the whole ${what} ${name}`, onclick: () => deleteDocument(item, what) },
          `Delete ${what}`,
        ),
      );
    }
    return el("li", { class: `item ${item.modality}`, dataset: { id: item.id, docId: item.doc_id } }, ...parts, body, actions);
  }

  async function deleteItem(item) {
    await removing(`/v1/items/${encodeURIComponent(item.id)}`, "Deleted");
  }

  async function deleteDocument(item, what) {
    if (!confirm(`Delete the whole ${what} “${item.title || item.source || item.doc_id}” with all its parts?`)) return;
    await removing(`/v1/documents/${encodeURIComponent(item.doc_id)}?collection=${encodeURIComponent(item.collection)}`, `Deleted the ${what}`);
  }

  async function dropCollection() {
    const name = collection();
    if (!confirm(`Delete the collection “${name}” and everything in it?`)) return;
    await removing(`/v1/collections/${encodeURIComponent(name)}`, `Deleted the collection “${name}”`);
  }

  async function removing(path, done) {
    show($("#items-error"), "");
    try {
      const { data } = await api("DELETE", path);
      await loadItems();
      $("#items-status").textContent = `${done}: ${plural(data.deleted, ["item", "items"])} removed. ${$("#items-status").textContent}`;
      loadCollections();
    } catch (error) {
      show($("#items-error"), describe(error));
    }
  }

  // ------------------------------------------------------------------ drag and drop

  function dropTarget(zone, onFiles) {
    zone.addEventListener("dragover", (event) => {
      if (!event.dataTransfer || !Array.from(event.dataTransfer.types).includes("Files")) return;
      event.preventDefault();
      zone.classList.add("dragging");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("dragging");
      if (event.dataTransfer && event.dataTransfer.files.length) onFiles(Array.from(event.dataTransfer.files));
    });
  }

  // ------------------------------------------------------------------ start

  function start() {
    const prefs = loadPrefs();
    if (prefs.collection) $("#collection").value = prefs.collection;
    if (prefs.threshold !== undefined) $("#threshold").value = prefs.threshold;
    if (prefs.topK) $("#top-k").value = prefs.topK;
    if (prefs.rerank !== undefined) $("#rerank").checked = prefs.rerank;
    if (Array.isArray(prefs.modalities)) for (const box of $$('input[name="modality"]')) box.checked = prefs.modalities.includes(box.value);
    $("#items-collection").textContent = collection();
    updateKeyButton();

    $("#search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      search();
    });
    $("#query").addEventListener("input", () => {
      if (example && $("#query").value) setExample(null); // typing switches back to a text search
    });
    $("#query-file").addEventListener("change", (event) => {
      const [file] = event.target.files;
      if (file) {
        setExample(file);
        search();
      }
    });
    $("#clear-example").addEventListener("click", () => {
      setExample(null);
      $("#query").focus();
    });
    dropTarget($("#query-drop"), ([file]) => {
      setExample(file);
      search();
    });
    $("#threshold").addEventListener("input", () => {
      savePrefs({ threshold: $("#threshold").value });
      applyThreshold();
    });
    $("#top-k").addEventListener("change", () => savePrefs({ topK: topK() }));
    $("#rerank").addEventListener("change", () => savePrefs({ rerank: $("#rerank").checked }));
    for (const box of $$('input[name="modality"]')) box.addEventListener("change", () => savePrefs({ modalities: modalities() }));

    document.addEventListener("keydown", (event) => {
      if (event.key !== "Escape" || document.querySelector("dialog[open]")) return;
      if (currentTab() === "search") {
        event.preventDefault();
        clearSearch();
      }
    });
    // One recording at a time.
    document.addEventListener(
      "play",
      (event) => {
        for (const player of $$("audio")) if (player !== event.target) player.pause();
      },
      true,
    );

    for (const tab of $$('[role="tab"]')) {
      tab.addEventListener("click", () => selectTab(tab.id.replace("tab-", "")));
      tab.addEventListener("keydown", (event) => {
        const step = { ArrowRight: 1, ArrowLeft: TABS.length - 1 }[event.key];
        if (step) selectTab(TABS[(TABS.indexOf(currentTab()) + step) % TABS.length], { focus: true });
      });
    }
    window.addEventListener("hashchange", () => selectTab(tabOfHash()));

    $("#collection").addEventListener("change", collectionChanged);
    $("#collection").addEventListener("input", () => {
      // Picking a name from the list takes effect at once; a typed name when the field is left.
      if (knownCollections.some((c) => c.name === $("#collection").value)) collectionChanged();
    });
    $("#lines-form").addEventListener("submit", addLines);
    $("#upload-files").addEventListener("change", (event) => {
      addPending(Array.from(event.target.files));
      event.target.value = "";
    });
    dropTarget($("#upload-drop"), addPending);
    $("#upload-form").addEventListener("submit", uploadPending);
    $("#refresh-items").addEventListener("click", libraryChanged);
    $("#drop-collection").addEventListener("click", dropCollection);
    $("#prev-page").addEventListener("click", () => {
      itemsOffset = Math.max(0, itemsOffset - ITEMS_PAGE);
      loadItems();
    });
    $("#next-page").addEventListener("click", () => {
      itemsOffset += ITEMS_PAGE;
      loadItems();
    });

    $("#key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("#api-key").value.trim();
      if (key) finishKeyRequest(key);
    });
    $("#key-cancel").addEventListener("click", () => finishKeyRequest(null));
    $("#key-dialog").addEventListener("cancel", (event) => {
      event.preventDefault();
      finishKeyRequest(null);
    });
    $("#forget-key").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORE);
      updateKeyButton();
      clearResults();
      $("#items").replaceChildren();
    });
    $("#viewer-close").addEventListener("click", () => $("#viewer").close());
    // What the Ask mode (ask.js) shares with the rest of the page.
    window.PrismUI = { $, el, show, plural, describe, ApiError, errorFrom, parseJson, withKey, authHeaders, apiUrl, collection, formatMs, openViewer, renderAudio, savePrefs, loadPrefs };
    document.dispatchEvent(new Event("prism-ui-ready"));
    $("#viewer").addEventListener("click", (event) => {
      if (event.target === $("#viewer")) $("#viewer").close(); // a click on the backdrop
    });

    selectTab(tabOfHash());
    loadInfo();
    loadCollections();
    $("#query").focus();
  }

  start();
})();
