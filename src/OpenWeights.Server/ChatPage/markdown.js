// A small Markdown renderer for the chat page: headings, paragraphs (a single newline is a line break, as chat replies
// mean it), **bold**, *italic*, `inline code`, fenced code blocks (``` or ~~~, an unclosed fence runs to the end, as a
// streamed reply has it), bulleted and numbered lists (nested by indentation), block quotes, rules, [links](https://...)
// and bare http(s) URLs, and backslash escapes.
//
// Safety: no text ever becomes HTML. The renderer builds DOM nodes (createElement, text nodes): whatever the model writes,
// <script> or <img onerror> included, is shown as text. A link is made only for http:, https: and mailto: addresses, and
// opens apart from the page (rel="noopener noreferrer"). The page's Content-Security-Policy (Trusted Types, no policy)
// would refuse an HTML string anyway.
"use strict";

const OwMarkdown = (() => {
  const el = (tag, className) => {
    const e = document.createElement(tag);
    if (className) e.className = className;
    return e;
  };

  // text with its newlines as <br>
  function appendText(parent, text) {
    const lines = text.split("\n");
    lines.forEach((line, i) => {
      if (i > 0) parent.append(el("br"));
      if (line) parent.append(document.createTextNode(line));
    });
  }

  function safeHref(url) {
    return /^(https?:\/\/|mailto:)/i.test(url) ? url : null;
  }

  function link(parent, text, href, inner) {
    const safe = safeHref(href);
    if (!safe) { appendText(parent, text); return; }
    const a = el("a");
    a.href = safe;
    a.rel = "noopener noreferrer";
    a.target = "_blank";
    if (inner) inline(a, text); else a.append(document.createTextNode(text));
    parent.append(a);
  }

  // one alternative per inline form; the first match in the text wins
  const INLINE = new RegExp([
    /\\([!-/:-@[-`{-~])/.source,                                // 1: a backslash escape
    /(`+)([^`]|[^`][\s\S]*?[^`])\2(?!`)/.source,               // 2, 3: code
    /\[([^\]\n]+)\]\(\s*<?([^\s()<>]+)>?\s*\)/.source,          // 4, 5: [text](url)
    /\*\*(?=\S)([\s\S]*?\S)\*\*/.source,                        // 6: **bold**
    /__(?=\S)([\s\S]*?\S)__(?!\w)/.source,                      // 7: __bold__
    /\*(?=[^\s*])([^*]*?[^\s*]|[^\s*])\*/.source,               // 8: *italic*
    /(?<![\w])_(?=[^\s_])([^_]*?[^\s_]|[^\s_])_(?![\w])/.source, // 9: _italic_
    /<(https?:\/\/[^\s<>]+)>/.source,                           // 10: <https://...>
    /(https?:\/\/[^\s<]*[^\s<.,;:!?)\]'"*_])/.source,          // 11: a bare URL
  ].join("|"));

  function inline(parent, text) {
    let rest = text;
    while (rest) {
      const m = INLINE.exec(rest);
      if (!m) { appendText(parent, rest); return; }
      if (m.index > 0) appendText(parent, rest.slice(0, m.index));
      if (m[1] !== undefined) parent.append(document.createTextNode(m[1]));
      else if (m[2] !== undefined) {
        const code = el("code");
        code.textContent = m[3].length > 2 && m[3].startsWith(" ") && m[3].endsWith(" ") ? m[3].slice(1, -1) : m[3];
        parent.append(code);
      }
      else if (m[4] !== undefined) link(parent, m[4], m[5], true);
      else if (m[6] !== undefined || m[7] !== undefined) { const b = el("strong"); inline(b, m[6] ?? m[7]); parent.append(b); }
      else if (m[8] !== undefined || m[9] !== undefined) { const i = el("em"); inline(i, m[8] ?? m[9]); parent.append(i); }
      else if (m[10] !== undefined) link(parent, m[10], m[10], false);
      else link(parent, m[11], m[11], false);
      rest = rest.slice(m.index + m[0].length);
    }
  }

  const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)[^`]*$/;
  const HEADING = /^ {0,3}(#{1,6})(?:\s+(.*?))?\s*#*\s*$/;
  const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
  const QUOTE = /^ {0,3}>\s?/;
  const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
  const indentOf = line => line.match(/^\s*/)[0].replace(/\t/g, "    ").length;
  const startsBlock = line => FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || ITEM.test(line);

  function codeBlock(lang, text) {
    const figure = el("div", "code-block");
    const bar = el("div", "code-bar");
    const label = el("span", "code-lang");
    label.textContent = lang || "code";
    const copy = el("button", "code-copy");
    copy.type = "button";
    copy.textContent = "Copy";
    copy.setAttribute("aria-label", "Copy the code");
    copy.addEventListener("click", () => {
      navigator.clipboard?.writeText(text).then(() => { copy.textContent = "Copied"; setTimeout(() => { copy.textContent = "Copy"; }, 1500); }, () => {});
    });
    bar.append(label, copy);
    const pre = el("pre");
    const code = el("code", lang ? "language-" + lang : "");
    code.textContent = text;
    pre.append(code);
    figure.append(bar, pre);
    return figure;
  }

  // the lines of a list starting at lines[i]: its items (text of each, indentation taken off) and where it ends
  function listAt(lines, i) {
    const first = lines[i].match(ITEM);
    const ordered = /\d/.test(first[2]);
    const base = indentOf(first[1]);
    const items = [];
    let j = i;
    while (j < lines.length) {
      const m = lines[j].match(ITEM);
      if (!m || indentOf(m[1]) !== base || /\d/.test(m[2]) !== ordered) break;
      const width = base + m[2].length + 1;
      const body = [m[3]];
      j++;
      while (j < lines.length) {
        const line = lines[j];
        if (line.trim() === "") {
          // a blank line stays in the item only when an indented line follows it
          if (j + 1 < lines.length && lines[j + 1].trim() !== "" && indentOf(lines[j + 1]) > base) { body.push(""); j++; continue; }
          break;
        }
        const inner = line.match(ITEM);
        if (inner && indentOf(inner[1]) <= base) break;
        if (!inner && indentOf(line) <= base && startsBlock(line)) break;
        body.push(line.slice(Math.min(indentOf(line), width)));
        j++;
      }
      items.push({ text: body.join("\n"), number: ordered ? parseInt(m[2], 10) : null });
    }
    return { ordered, items, end: j };
  }

  function blocks(parent, text) {
    const lines = text.replace(/\r\n?/g, "\n").split("\n");
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      if (line.trim() === "") { i++; continue; }
      let m;
      if ((m = line.match(FENCE))) {
        const close = new RegExp("^ {0,3}" + m[1][0] + "{" + m[1].length + ",}\\s*$");
        const body = [];
        i++;
        while (i < lines.length && !close.test(lines[i])) body.push(lines[i++]);
        i++; // the closing fence (or past the end: an unclosed fence runs to the end)
        parent.append(codeBlock(m[2], body.join("\n")));
      } else if ((m = line.match(HEADING))) {
        const h = el("h" + m[1].length);
        inline(h, m[2] ?? "");
        parent.append(h);
        i++;
      } else if (RULE.test(line)) {
        parent.append(el("hr"));
        i++;
      } else if (QUOTE.test(line)) {
        const body = [];
        while (i < lines.length && lines[i].trim() !== "" && QUOTE.test(lines[i])) body.push(lines[i++].replace(QUOTE, ""));
        const q = el("blockquote");
        blocks(q, body.join("\n"));
        parent.append(q);
      } else if (ITEM.test(line)) {
        const list = listAt(lines, i);
        const l = el(list.ordered ? "ol" : "ul");
        if (list.ordered && list.items[0].number !== 1) l.start = list.items[0].number;
        for (const item of list.items) {
          const li = el("li");
          const inner = document.createDocumentFragment();
          blocks(inner, item.text);
          // a tight item's one paragraph is its text
          if (inner.childNodes.length >= 1 && inner.firstChild.nodeName === "P" && !item.text.includes("\n\n")) {
            const p = inner.firstChild;
            li.append(...p.childNodes);
            p.remove();
          }
          li.append(inner);
          l.append(li);
        }
        parent.append(l);
        i = list.end;
      } else {
        const body = [];
        while (i < lines.length && lines[i].trim() !== "" && (body.length === 0 || !startsBlock(lines[i]))) body.push(lines[i++]);
        const p = el("p");
        inline(p, body.join("\n"));
        parent.append(p);
      }
    }
  }

  /** The rendering of a Markdown text, as a fragment of DOM nodes. */
  function render(text) {
    const f = document.createDocumentFragment();
    blocks(f, String(text ?? ""));
    return f;
  }

  return { render };
})();
