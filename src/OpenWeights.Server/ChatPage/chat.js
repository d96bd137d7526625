// The chat page: talks to this server's own OpenAI-compatible API (/v1/models, /v1/chat/completions streamed as
// server-sent events read from fetch's body), keeps conversations, settings and the API key in this browser's local
// storage, and renders replies with OwMarkdown (markdown.js), which builds DOM nodes and never HTML strings.
"use strict";

(() => {
  const $ = id => document.getElementById(id);
  const KEYS = {
    conversations: "openweights.chat.conversations",
    current: "openweights.chat.current",
    settings: "openweights.chat.settings",
    apiKey: "openweights.chat.apiKey",
  };

  const read = (key, fallback) => {
    try { const v = localStorage.getItem(key); return v === null ? fallback : JSON.parse(v); } catch { return fallback; }
  };
  const write = (key, value) => {
    try { localStorage.setItem(key, JSON.stringify(value)); } catch (e) { showError("This browser would not keep the conversation: " + e.message); }
  };

  // [{ id, title, system, updated, messages: [{ role, content, reasoning?, state?, note? }] }], newest first
  let conversations = read(KEYS.conversations, []);
  if (!Array.isArray(conversations)) conversations = [];
  let currentId = read(KEYS.current, null);
  const settings = Object.assign({ system: "", temperature: 0.7, top_p: 0.95, max_tokens: 1024 }, read(KEYS.settings, {}));
  let apiKey = read(KEYS.apiKey, "");
  let modelId = null;
  let running = null; // the AbortController of the reply being streamed

  const save = () => { write(KEYS.conversations, conversations); write(KEYS.current, currentId); };
  const current = () => conversations.find(c => c.id === currentId) ?? null;
  const newId = () => Date.now().toString(36) + Math.random().toString(36).slice(2, 8);

  function showError(text) {
    const e = $("error");
    e.textContent = text;
    e.hidden = !text;
  }

  function headers() {
    const h = { "Content-Type": "application/json" };
    if (apiKey) h.Authorization = "Bearer " + apiKey;
    return h;
  }

  // an error body of the OpenAI API ({"error":{"message"}}), or the status
  async function errorText(resp) {
    try {
      const body = await resp.json();
      return body?.error?.message ?? body?.error ?? `HTTP ${resp.status}`;
    } catch { return `HTTP ${resp.status}`; }
  }

  // ---- the API key ----

  function askForKey(why) {
    $("key-why").textContent = why;
    $("key-panel").hidden = false;
    $("key-input").focus();
  }

  $("key-form").addEventListener("submit", ev => {
    ev.preventDefault();
    apiKey = $("key-input").value.trim();
    write(KEYS.apiKey, apiKey);
    $("key-input").value = "";
    $("key-panel").hidden = true;
    $("forget-key").hidden = !apiKey;
    loadModel();
  });

  $("forget-key").addEventListener("click", () => {
    apiKey = "";
    localStorage.removeItem(KEYS.apiKey);
    $("forget-key").hidden = true;
    loadModel();
  });

  // ---- the model: its name, licence and context size (GET /v1/models) ----

  async function loadModel() {
    let resp;
    try {
      resp = await fetch("/v1/models", { headers: headers() });
    } catch (e) {
      showError("The server cannot be reached: " + e.message);
      setTimeout(loadModel, 5000);
      return;
    }
    if (resp.status === 401) {
      askForKey(apiKey ? "The server refused this key; enter the right one." : "This server needs an API key.");
      $("model-name").textContent = "(API key needed)";
      return;
    }
    if (resp.status === 503) {
      $("model-name").textContent = "loading…";
      setTimeout(loadModel, 2000);
      return;
    }
    if (!resp.ok) { showError("The model list failed: " + await errorText(resp)); return; }
    const model = (await resp.json()).data?.[0];
    if (!model) { showError("The server serves no model."); return; }
    modelId = model.id;
    const meta = model.meta ?? {};
    $("model-name").textContent = meta.name && meta.name !== model.id ? `${model.id} (${meta.name})` : model.id;
    $("model-license").textContent = meta.license || "not stated in the model file";
    $("model-context").textContent = meta.context_length ? `${meta.context_length} tokens` : "unknown";
    document.title = `${model.id} · OpenWeights chat`;
    showError("");
  }

  // ---- settings ----

  const numberOr = (input, fallback) => {
    const v = parseFloat(input.value);
    return Number.isFinite(v) ? v : fallback;
  };

  function showSettings() {
    $("temperature").value = settings.temperature;
    $("top-p").value = settings.top_p;
    $("max-tokens").value = settings.max_tokens;
    $("system").value = current()?.system ?? settings.system;
    $("forget-key").hidden = !apiKey;
  }

  for (const id of ["temperature", "top-p", "max-tokens"]) {
    $(id).addEventListener("input", () => {
      settings.temperature = Math.min(2, Math.max(0, numberOr($("temperature"), 0.7)));
      settings.top_p = Math.min(1, Math.max(0.01, numberOr($("top-p"), 0.95)));
      settings.max_tokens = Math.max(1, Math.round(numberOr($("max-tokens"), 1024)));
      write(KEYS.settings, settings);
    });
  }

  $("system").addEventListener("input", () => {
    settings.system = $("system").value;
    write(KEYS.settings, settings);
    const c = current();
    if (c) { c.system = settings.system; save(); }
  });

  // ---- conversations ----

  function renderConversations() {
    const list = $("conversations");
    list.replaceChildren();
    for (const c of conversations) {
      const li = document.createElement("li");
      const open = document.createElement("button");
      open.type = "button";
      open.className = "conversation";
      open.textContent = c.title || "New conversation";
      if (c.id === currentId) open.setAttribute("aria-current", "true");
      open.addEventListener("click", () => { if (!running) { currentId = c.id; save(); renderAll(); } });
      const del = document.createElement("button");
      del.type = "button";
      del.className = "delete";
      del.textContent = "×";
      del.title = "Delete this conversation";
      del.setAttribute("aria-label", "Delete the conversation " + (c.title || ""));
      del.addEventListener("click", () => {
        if (running) return;
        conversations = conversations.filter(x => x.id !== c.id);
        if (currentId === c.id) currentId = conversations[0]?.id ?? null;
        save();
        renderAll();
      });
      li.append(open, del);
      list.append(li);
    }
  }

  function messageView(message) {
    const article = document.createElement("article");
    article.className = "msg " + message.role;
    article.dataset.role = message.role;
    const who = document.createElement("h3");
    who.className = "who";
    who.textContent = message.role === "user" ? "You" : "Assistant";
    const reasoning = document.createElement("details");
    reasoning.className = "reasoning";
    const summary = document.createElement("summary");
    summary.textContent = "Reasoning";
    const thought = document.createElement("div");
    thought.className = "reasoning-text md";
    reasoning.append(summary, thought);
    const content = document.createElement("div");
    content.className = "content" + (message.role === "assistant" ? " md" : "");
    const note = document.createElement("p");
    note.className = "note";
    article.append(who, reasoning, content, note);
    updateView(article, message);
    return article;
  }

  function updateView(article, message) {
    article.dataset.state = message.state ?? "done";
    const [, reasoning, content, note] = article.children;
    reasoning.hidden = !message.reasoning;
    if (message.reasoning) reasoning.lastChild.replaceChildren(OwMarkdown.render(message.reasoning));
    if (message.role === "assistant") content.replaceChildren(OwMarkdown.render(message.content));
    else content.textContent = message.content;
    note.textContent = message.note ?? "";
    note.hidden = !message.note;
  }

  function renderMessages() {
    const box = $("messages");
    const c = current();
    box.replaceChildren(...(c ? c.messages.map(messageView) : []));
    if (!c || c.messages.length === 0) {
      const empty = document.createElement("p");
      empty.className = "empty";
      empty.textContent = "Send a message to start a conversation.";
      box.append(empty);
    }
    box.scrollTop = box.scrollHeight;
  }

  function renderAll() {
    renderConversations();
    renderMessages();
    showSettings();
  }

  $("new-chat").addEventListener("click", () => {
    if (running) return;
    currentId = null; // made when its first message is sent
    save();
    renderAll();
    $("prompt").focus();
  });

  // ---- sending and streaming ----

  function setBusy(busy) {
    $("send").disabled = busy;
    $("stop").hidden = !busy;
    $("new-chat").disabled = busy;
    for (const b of $("conversations").querySelectorAll("button")) b.disabled = busy;
    if (!busy) $("prompt").focus();
  }

  // server-sent events from a fetch body: calls onData with each data object; returns at [DONE] or the end
  async function readEvents(body, onData) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          for (const line of event.split("\n")) {
            if (!line.startsWith("data:")) continue;
            const data = line.slice(5).trim();
            if (data === "[DONE]") return;
            onData(JSON.parse(data));
          }
        }
      }
    } catch (e) {
      reader.cancel().catch(() => {}); // an error event or a bad line: the rest is not read
      throw e;
    }
  }

  async function send(text) {
    if (!modelId) { showError("No model yet: " + ($("key-panel").hidden ? "the server is still loading it." : "enter the API key first.")); return; }
    showError("");
    let c = current();
    if (!c) {
      c = { id: newId(), title: "", system: $("system").value, messages: [] };
      conversations.unshift(c);
      currentId = c.id;
    }
    if (!c.title) c.title = text.replace(/\s+/g, " ").slice(0, 60);
    c.updated = Date.now();
    c.messages.push({ role: "user", content: text });
    const reply = { role: "assistant", content: "", reasoning: "", state: "streaming" };
    c.messages.push(reply);
    conversations = [c, ...conversations.filter(x => x !== c)];
    save();
    renderAll();
    const view = $("messages").lastElementChild;

    const history = c.messages.slice(0, -1)
      .filter(m => m.content && !(m.role === "assistant" && m.state === "error"))
      .map(m => ({ role: m.role, content: m.content }));
    const system = (c.system ?? "").trim();
    const body = {
      model: modelId,
      messages: system ? [{ role: "system", content: system }, ...history] : history,
      stream: true,
      stream_options: { include_usage: true },
      temperature: settings.temperature,
      top_p: settings.top_p,
      max_tokens: settings.max_tokens,
    };

    running = new AbortController();
    const signal = running.signal;
    setBusy(true);
    let scheduled = false;
    const redraw = () => {
      if (scheduled) return;
      scheduled = true;
      requestAnimationFrame(() => {
        scheduled = false;
        if (view.isConnected) updateView(view, reply);
        const box = $("messages");
        box.scrollTop = box.scrollHeight;
      });
    };
    let finish = null, tokens = null;
    try {
      const resp = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body), signal });
      if (!resp.ok) {
        const why = await errorText(resp);
        if (resp.status === 401) askForKey("The server refused the key: " + why);
        throw new Error(why);
      }
      await readEvents(resp.body, event => {
        if (event.error) throw new Error(event.error.message ?? String(event.error));
        if (event.usage) tokens = event.usage.completion_tokens;
        const choice = event.choices?.[0];
        if (!choice) return;
        const delta = choice.delta ?? {};
        if (delta.reasoning_content) reply.reasoning += delta.reasoning_content;
        if (delta.content) reply.content += delta.content;
        if (choice.finish_reason) finish = choice.finish_reason;
        redraw();
      });
      if (signal.aborted) throw new DOMException("stopped", "AbortError");
      reply.state = "done";
      const parts = [];
      if (finish === "length") parts.push("cut off at the max tokens limit");
      if (tokens !== null) parts.push(`${tokens} tokens`);
      reply.note = parts.join(" · ");
    } catch (e) {
      if (e.name === "AbortError") {
        reply.state = "stopped";
        reply.note = "stopped";
      } else {
        reply.state = "error";
        reply.note = "error: " + e.message;
        showError(e.message);
      }
    } finally {
      running = null;
      c.updated = Date.now();
      save();
      if (view.isConnected) updateView(view, reply);
      setBusy(false);
      renderConversations();
    }
  }

  $("composer").addEventListener("submit", ev => {
    ev.preventDefault();
    const text = $("prompt").value.trim();
    if (!text || running) return;
    $("prompt").value = "";
    send(text);
  });

  $("prompt").addEventListener("keydown", ev => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      $("composer").requestSubmit();
    }
  });

  $("stop").addEventListener("click", () => running?.abort());

  // a reply that was streaming when the page went away ends as stopped
  for (const c of conversations)
    for (const m of c.messages ?? [])
      if (m.state === "streaming") { m.state = "stopped"; m.note = "stopped (the page was closed)"; }
  if (!current()) currentId = conversations[0]?.id ?? null;
  save();
  renderAll();
  loadModel();
})();
