"use strict";
// The FAQ assistant for any website: <script src="https://<service>/widget.js" defer></script>.
// A custom element in a shadow root (no style leaks either way): streamed answers with numbered citations,
// "Cette réponse vous a-t-elle été utile ?" votes, follow-up questions within the tab's conversation, and the
// handoff to a person when the FAQ does not answer. Options on the script tag: data-position (bottom-right,
// bottom-left, inline), data-target (where an inline assistant goes, a CSS selector), data-open, data-title,
// data-lang (fr, en), data-facets ('{"couloir": "Biologie"}' or couloir=Biologie;theme=X), data-channel,
// data-collection (one FAQ of a deployment that serves several; or load the script from /c/<name>/widget.js).
(() => {
  const script = document.currentScript;
  if (!script || customElements.get("faq-assistant")) return;
  const SERVICE = new URL(script.src, window.location.href);
  const options = { ...script.dataset };
  // the API the script came from: /c/<name>/widget.js answers from that collection, as data-collection says
  const mounted = SERVICE.pathname.replace(/\/widget\.js$/, "");
  const collection = options.collection ? "/c/" + encodeURIComponent(options.collection) : "";
  const BASE = SERVICE.origin + (collection || mounted);

  const STRINGS = {
    fr: {
      launcher: "Une question ?", close: "Fermer", question: "Votre question", send: "Poser la question",
      help: "Entrée pour envoyer, Maj+Entrée pour aller à la ligne.", intro: "Les réponses viennent de la FAQ {faq}, avec un lien vers chaque entrée citée.",
      examples: "Exemples de questions", facets: "Préciser le sujet (facultatif)", all: "Tous", you: "Vous",
      searching: "Recherche dans la FAQ…", writing: "Rédaction de la réponse…", ready: "Réponse prête.",
      declined: "La FAQ ne répond pas à cette question.", support: "Contacter le support", sources: "Sources",
      suggested: "Si aucune de ces entrées ne vous répond, un conseiller peut prendre le relais.",
      passages: "Passages retrouvés", useful: "Cette réponse vous a-t-elle été utile ?", yes: "Oui", no: "Non",
      comment: "Commentaire (facultatif)", sendComment: "Envoyer le commentaire", thanks: "Merci pour votre retour.", commentThanks: "Commentaire envoyé, merci.",
      voteFailed: "Votre retour n'a pas pu être enregistré. Réessayez dans un instant.",
      handoff: "Transmettre la conversation à un conseiller", contact: "Comment vous joindre (facultatif)",
      handoffMessage: "Message pour le conseiller (facultatif)", handoffSend: "Envoyer au support",
      handoffDone: "Votre conversation a été transmise : un conseiller vous répondra.",
      handoffFailed: "La conversation n'a pas pu être transmise. Utilisez le lien du support.",
      down: "Le service ne répond pas. Réessayez dans un instant.", empty: "Écrivez une question.",
      understood: "Question comprise : « {q} ».", newConversation: "Nouvelle conversation", source: "source {n}",
      entry: "Entrée {id}", checked: "(vérifié le {date})", stale: "(vérifié le {date}, à revérifier)",
    },
    en: {
      launcher: "Any question?", close: "Close", question: "Your question", send: "Ask",
      help: "Enter to send, Shift+Enter for a new line.", intro: "Answers come from the {faq} FAQ, with a link to each entry cited.",
      examples: "Example questions", facets: "Narrow the topic (optional)", all: "All", you: "You",
      searching: "Searching the FAQ…", writing: "Writing the answer…", ready: "Answer ready.",
      declined: "The FAQ does not answer this question.", support: "Contact support", sources: "Sources",
      suggested: "If none of these entries answers you, a person can take over.",
      passages: "Passages found", useful: "Was this answer useful?", yes: "Yes", no: "No",
      comment: "Comment (optional)", sendComment: "Send the comment", thanks: "Thank you for your feedback.", commentThanks: "Comment sent, thank you.",
      voteFailed: "Your feedback could not be saved. Try again in a moment.",
      handoff: "Send the conversation to a person", contact: "How to reach you (optional)",
      handoffMessage: "Message for the agent (optional)", handoffSend: "Send to support",
      handoffDone: "Your conversation was sent: a person will answer you.",
      handoffFailed: "The conversation could not be sent. Use the support link.",
      down: "The service does not answer. Try again in a moment.", empty: "Write a question.",
      understood: "Question understood as: “{q}”.", newConversation: "New conversation", source: "source {n}",
      entry: "Entry {id}", checked: "(checked on {date})", stale: "(checked on {date}, may be out of date)",
    },
  };
  const lang = (options.lang || document.documentElement.lang || "fr").slice(0, 2) === "en" ? "en" : "fr";
  const T = (key, values = {}) => STRINGS[lang][key].replace(/\{(\w+)\}/g, (_, name) => values[name] ?? "");

  // lengths in em, never rem: a page's own root font size must not resize the assistant
  const FONT = 'font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif !important; color: #161616 !important;';
  const STYLE = `
:host { all: initial; display: block; ${FONT} }
:host([data-floating]) { position: fixed; bottom: 1em; z-index: 2147483000; }
:host([data-floating="bottom-right"]) { right: 1em; } :host([data-floating="bottom-left"]) { left: 1em; }
* { box-sizing: border-box; font: inherit; color: inherit; }
.panel { background: #fff; border: 1px solid #6a6a7a; border-radius: .6em; padding: 1em; width: min(26em, calc(100vw - 2em));
  max-height: min(40em, calc(100vh - 6em)); overflow: auto; box-shadow: 0 .4em 1.5em rgba(0,0,0,.25); }
:host([data-inline]) .panel { width: auto; max-height: none; box-shadow: none; border: 0; padding: 0; }
.head { display: flex; justify-content: space-between; align-items: center; gap: .5em; }
h2 { font-size: 1.15em; font-weight: 700; margin: 0; } h3 { font-size: 1em; font-weight: 700; margin: .6em 0 .2em; }
p { margin: .3em 0; } .muted { color: #4a4a4a; font-size: .95em; }
button { padding: .55em 1em; border: 2px solid #000091; border-radius: .4em; background: #000091; color: #fff; cursor: pointer;
  min-height: 44px; margin-top: .5em; }
button.light, .choices button { background: #fff; color: #000091; }
.choices button[aria-pressed="true"] { background: #000091; color: #fff; }
button[disabled] { opacity: .6; cursor: wait; }
.launcher { border-radius: 2em; box-shadow: 0 .3em 1em rgba(0,0,0,.3); margin: 0; }
label { display: block; font-weight: 600; margin: .6em 0 .2em; }
textarea, input, select { width: 100%; padding: .5em; border: 2px solid #6a6a7a; border-radius: .4em; background: #fff; }
:focus-visible, textarea:focus, input:focus, select:focus, button:focus { outline: 3px solid #000091; outline-offset: 2px; }
a { color: #000091; text-decoration: underline; } a.cite { font-weight: 700; text-decoration: none; padding: 0 .1em; }
.log { margin: .5em 0; }
.turn { border-top: 1px solid #ddd; padding: .5em 0; } .q { font-weight: 600; }
.answer { white-space: pre-wrap; background: #f2f2f9; padding: .7em; border-radius: .5em; margin: .3em 0; }
.status { color: #4a4a4a; min-height: 1.2em; } .error { color: #b00020; }
ol.sources, ol.passages { padding-left: 1.4em; margin: .2em 0; } .sources li, .passages li { word-break: break-word; }
fieldset { border: 1px solid #6a6a7a; border-radius: .5em; margin: .6em 0 0; padding: .4em .7em .7em; }
legend { font-weight: 700; padding: 0 .3em; } .choices button { margin-right: .4em; min-width: 4.5em; }
ul.examples { list-style: none; padding: 0; margin: .3em 0; display: flex; flex-wrap: wrap; gap: .4em; }
ul.examples button { background: #fff; color: #000091; margin: 0; text-align: left; }
details summary { cursor: pointer; font-weight: 600; margin: .4em 0; }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
[hidden] { display: none !important; }`;

  const el = (tag, props = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key.startsWith("aria-") || key.startsWith("data-") || key === "role" || key === "for") node.setAttribute(key, value);
      else node[key] = value;
    }
    node.append(...children);
    return node;
  };
  // Only web and relative links become clickable (never javascript: or data:).
  const safeHref = (url) => {
    try {
      const parsed = new URL(url, BASE);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : "#";
    } catch (err) {
      return "#";
    }
  };
  // « (vérifié le 30/11/2026) » after a source whose web page was checked that day; « à revérifier » when stale
  const checked = (c) => {
    if (!c.checked_on) return "";
    const [y, m, d] = c.checked_on.split("-");
    return " " + T(c.stale ? "stale" : "checked", { date: lang === "en" ? c.checked_on : `${d}/${m}/${y}` });
  };
  const parseFacets = (text) => {
    if (!text) return {};
    try { return JSON.parse(text); } catch (err) { /* key=value;key=value */ }
    return Object.fromEntries(text.split(";").map((pair) => pair.split("=").map((s) => s.trim())).filter((p) => p.length === 2 && p[0]));
  };

  async function* sseEvents(response) {
    const reader = response.body.getReader(), decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
      }
    }
  }

  let uid = 0;
  class FaqAssistant extends HTMLElement {
    constructor() {
      super();
      this.root = this.attachShadow({ mode: "open" });
      this.config = { faq_name: "", examples: [], facets: {}, support_url: null, handoff_form: false, token: null };
      this.turns = [];  // {question, answer, citations, confidence, declined, answer_id}, this tab's conversation
      this.storageKey = "faq-assistant:" + BASE;
      this.uid = "faq" + ++uid;
    }

    connectedCallback() {
      if (this.panel) return;
      this.inline = this.dataset.inline !== undefined;
      this.render();
      this.restore();
      this.loadConfig();
    }

    headers() {
      const h = { "Content-Type": "application/json", "X-Rag-Channel": options.channel === "page" ? "page" : "widget" };
      if (this.config.token) h.Authorization = "Bearer " + this.config.token;
      return h;
    }

    // the configuration, and with it a fresh token when API keys are on, asked again before the token expires
    async fetchConfig() {
      try {
        const response = await fetch(BASE + "/widget/config", { credentials: "omit" });
        if (response.ok) this.config = { ...this.config, ...(await response.json()) };
      } catch (err) { /* the assistant still opens: asking says when the service cannot be reached */ }
      clearTimeout(this.renewal);
      if (this.config.token_seconds) this.renewal = setTimeout(() => this.fetchConfig(), this.config.token_seconds * 750);
    }

    // a POST to the service; a token that expired meanwhile (a laptop asleep, a throttled tab) is renewed once
    async post(path, body) {
      const send = () => fetch(BASE + path, { method: "POST", headers: this.headers(), body: JSON.stringify(body), credentials: "omit" });
      const response = await send();
      if (response.status !== 401 || !this.config.token) return response;
      await this.fetchConfig();
      return send();
    }

    async loadConfig() {
      await this.fetchConfig();
      this.heading.textContent = options.title || (this.config.faq_name ? "FAQ " + this.config.faq_name : T("launcher"));
      this.intro.textContent = this.config.faq_name ? T("intro", { faq: this.config.faq_name }) : "";
      this.showExamples();
      if (this.inline) this.showFacets();
    }

    render() {
      const id = this.uid;
      // a constructed style sheet: a host page's Content-Security-Policy for styles does not concern it
      if ("adoptedStyleSheets" in this.root && "replaceSync" in CSSStyleSheet.prototype) {
        const sheet = new CSSStyleSheet();
        sheet.replaceSync(STYLE);
        this.root.adoptedStyleSheets = [sheet];
      } else {
        this.root.append(el("style", {}, STYLE));
      }
      this.heading = el("h2", { id: id + "-title" }, options.title || T("launcher"));
      this.closeButton = el("button", { type: "button", className: "light", "aria-label": T("close") }, T("close"));
      this.closeButton.hidden = this.inline;
      this.intro = el("p", { className: "muted" });
      this.examples = el("div");
      this.facets = el("div");
      this.log = el("div", { className: "log", role: "log", "aria-live": "polite", "aria-labelledby": id + "-title" });
      this.status = el("p", { className: "status", role: "status" });
      this.question = el("textarea", { id: id + "-q", rows: 2, maxLength: 2000, "aria-describedby": id + "-help" });
      this.send = el("button", { type: "submit" }, T("send"));
      this.form = el(
        "form", { noValidate: true },
        el("label", { for: id + "-q" }, T("question")), this.question,
        el("p", { id: id + "-help", className: "muted" }, T("help")), this.send,
      );
      this.reset = el("button", { type: "button", className: "light" }, T("newConversation"));
      this.reset.hidden = true;
      this.panel = el(
        "div", { className: "panel", id: id + "-panel", "aria-labelledby": id + "-title" },
        el("div", { className: "head" }, this.heading, this.closeButton),
        this.intro, this.examples, this.facets, this.log, this.status, this.form, this.reset,
      );
      if (this.inline) {
        this.panel.setAttribute("role", "region");
        this.root.append(this.panel);
      } else {
        this.panel.setAttribute("role", "dialog");
        this.panel.setAttribute("aria-modal", "true");
        this.panel.hidden = true;
        this.launcher = el("button", { type: "button", className: "launcher", "aria-expanded": "false", "aria-controls": id + "-panel" }, T("launcher"));
        this.root.append(this.launcher, this.panel);
        this.launcher.addEventListener("click", () => this.open());
        this.closeButton.addEventListener("click", () => this.close());
        this.panel.addEventListener("keydown", (event) => this.trap(event));
      }
      this.form.addEventListener("submit", (event) => { event.preventDefault(); this.submit(); });
      this.question.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); this.submit(); }
      });
      this.reset.addEventListener("click", () => {
        this.turns = []; this.save(); this.log.replaceChildren(); this.reset.hidden = true; this.showExamples(); this.question.focus();
      });
      if (options.open !== undefined && options.open !== "false" && !this.inline) this.open();
    }

    open() {
      this.panel.hidden = false;
      this.launcher.setAttribute("aria-expanded", "true");
      this.launcher.hidden = true;
      this.question.focus();
    }

    close() {
      this.panel.hidden = true;
      this.launcher.hidden = false;
      this.launcher.setAttribute("aria-expanded", "false");
      this.launcher.focus();
    }

    // Focus stays in the open panel (Tab wraps around); Escape closes it and gives the focus back.
    trap(event) {
      if (event.key === "Escape") { event.preventDefault(); this.close(); return; }
      if (event.key !== "Tab") return;
      const focusable = [...this.panel.querySelectorAll("button, a[href], textarea, input, select, summary")]
        .filter((node) => !node.disabled && node.offsetParent !== null);
      if (!focusable.length) return;
      const first = focusable[0], last = focusable[focusable.length - 1];
      const active = this.root.activeElement;
      if (event.shiftKey && active === first) { event.preventDefault(); last.focus(); }
      else if (!event.shiftKey && active === last) { event.preventDefault(); first.focus(); }
    }

    showExamples() {
      const examples = this.turns.length ? [] : (this.config.examples || []).slice(0, 3);
      if (!examples.length) { this.examples.replaceChildren(); return; }
      const list = el("ul", { className: "examples" }, ...examples.map((text) => {
        const button = el("button", { type: "button", className: "example" }, text);
        button.addEventListener("click", () => { this.question.value = text; this.submit(); });
        return el("li", {}, button);
      }));
      const heading = el("h3", { id: this.uid + "-examples" }, T("examples"));
      this.examples.replaceChildren(el("section", { "aria-labelledby": heading.id }, heading, list));
    }

    showFacets() {
      const selects = Object.entries(this.config.facets || {}).filter(([name, values]) => name !== "source" && Object.keys(values).length > 1);
      if (!selects.length) return;
      const labels = this.config.facet_labels || {};
      const box = el("details", { className: "facets" }, el("summary", {}, T("facets")));
      for (const [name, values] of selects) {
        const select = el("select", { id: this.uid + "-facet-" + name, "data-facet": name }, el("option", { value: "" }, T("all")));
        for (const [value, count] of Object.entries(values)) select.append(el("option", { value }, `${value} (${count})`));
        box.append(el("label", { for: select.id }, labels[name] || name.replace(/_/g, " ")), select);
      }
      this.facets.replaceChildren(box);
    }

    filters() {
      const chosen = parseFacets(options.facets);
      for (const select of this.facets.querySelectorAll("select[data-facet]")) {
        if (select.value) chosen[select.dataset.facet] = select.value;
      }
      return chosen;
    }

    save() {
      try { sessionStorage.setItem(this.storageKey, JSON.stringify(this.turns.slice(-20))); } catch (err) { /* private mode */ }
    }

    restore() {
      let saved = [];
      try { saved = JSON.parse(sessionStorage.getItem(this.storageKey) || "[]"); } catch (err) { saved = []; }
      for (const turn of saved) {
        const view = this.addTurn(turn.question);
        this.turns.push(turn);
        this.finish(view, turn, { passages: [] }, true);
      }
      this.reset.hidden = !this.turns.length;
    }

    say(text, isError = false) {
      this.status.textContent = text;
      this.status.classList.toggle("error", isError);
    }

    addTurn(question) {
      const view = {
        item: el("div", { className: "turn" }),
        answer: el("div", { className: "answer" }),
        state: el("p", { className: "status turn-status" }),
        sources: el("ol", { className: "sources" }),
        passages: el("ol", { className: "passages" }),
      };
      view.sourcesTitle = el("h3", {}, T("sources"));
      view.sourcesTitle.hidden = true;
      view.passagesBox = el("details", { className: "passages-box" }, el("summary", {}, T("passages")), view.passages);
      view.passagesBox.hidden = true;
      view.item.append(el("p", { className: "q" }, el("span", { className: "sr" }, T("you") + " : "), question), view.answer, view.state, view.sourcesTitle, view.sources, view.passagesBox);
      this.log.append(view.item);
      this.examples.replaceChildren();
      return view;
    }

    // Text with [n] markers as links to the numbered entries, and URLs as links.
    renderAnswer(view, text, passages) {
      view.answer.replaceChildren();
      let last = 0;
      for (const match of text.matchAll(/\[(\d{1,3})\]|(https?:\/\/[^\s<>"')\]]+)/g)) {
        view.answer.append(text.slice(last, match.index));
        const hit = match[1] ? passages[Number(match[1]) - 1] : null;
        if (match[2]) {
          const url = match[2].replace(/[.,;:!?]+$/, "");
          view.answer.append(el("a", { href: safeHref(url), rel: "noopener", target: "_blank" }, url), match[2].slice(url.length));
        } else if (hit) {
          const n = match[1];
          view.answer.append(el("a", { href: safeHref(hit.url), className: "cite", title: hit.question || "", "aria-label": T("source", { n }), rel: "noopener", target: "_blank" }, `[${n}]`));
        } else {
          view.answer.append(match[0]);
        }
        last = match.index + match[0].length;
      }
      view.answer.append(text.slice(last));
    }

    async submit() {
      const text = this.question.value.trim();
      if (!text) { this.say(T("empty"), true); this.question.focus(); return; }
      if (this.busy) return;
      this.busy = true;
      this.send.disabled = true;
      this.question.value = "";
      const history = this.turns.map((t) => t.question).slice(-5);
      const view = this.addTurn(text);
      this.log.setAttribute("aria-busy", "true");
      this.say(T("searching"));
      let streamed = "", passages = [];
      try {
        const body = { query: text, stream: true, filters: this.filters(), history };
        const response = await this.post("/ask", body);
        if (!response.ok) {
          const error = await response.json().catch(() => ({}));
          view.state.textContent = (error.error && error.error.message) || T("down");
          view.state.classList.add("error");
          this.say(view.state.textContent, true);
          return;
        }
        for await (const { event, data } of sseEvents(response)) {
          if (event === "passages") {
            passages = data.passages;
            if (!data.abstained) this.say(T("writing"));
          } else if (event === "delta") {
            streamed += data.text;
            this.renderAnswer(view, streamed, passages);
          } else if (event === "reset") {
            streamed = "";
            this.renderAnswer(view, "", passages);
          } else if (event === "done") {
            const turn = { question: text, answer: data.answer, citations: data.citations, confidence: data.confidence, declined: data.abstained, outcome: data.outcome || (data.abstained ? "declined" : "answered"), answer_id: data.answer_id, handoff: data.handoff, resolved: data.resolved, note: data.note };
            this.turns.push(turn);
            this.save();
            this.finish(view, turn, { passages }, false);
            this.say(T("ready"));
          } else if (event === "error") {
            view.state.textContent = data.message || T("down");
            view.state.classList.add("error");
          }
        }
      } catch (err) {
        view.state.textContent = T("down");
        view.state.classList.add("error");
        this.say(T("down"), true);
      } finally {
        this.busy = false;
        this.send.disabled = false;
        this.log.setAttribute("aria-busy", "false");
        this.reset.hidden = !this.turns.length;
      }
    }

    finish(view, turn, { passages }, restored) {
      this.renderAnswer(view, turn.answer, passages.length ? passages : turn.citations.map((c) => ({ url: c.url, question: c.question })));
      view.sources.replaceChildren(...turn.citations.map((c) => el("li", { value: c.n }, el("a", { href: safeHref(c.url), rel: "noopener", target: "_blank" }, c.question || c.url), checked(c))));
      view.sourcesTitle.hidden = !turn.citations.length;
      view.passages.replaceChildren(...passages.map((p) => el("li", {}, el("a", { href: safeHref(p.url), rel: "noopener", target: "_blank" }, p.question || T("entry", { id: p.id })), el("p", {}, p.text))));
      view.passagesBox.hidden = !passages.length;
      const suggested = turn.outcome === "suggested";
      if (turn.declined) {
        view.state.textContent = T(suggested ? "suggested" : "declined");
        const support = (turn.handoff && turn.handoff.support_url) || this.config.support_url;
        if (support) view.state.append(" ", el("a", { href: safeHref(support), rel: "noopener", target: "_blank" }, T("support")));
        if (turn.handoff && turn.handoff.form && !restored) view.item.append(this.handoffForm(turn));
        if (suggested && turn.answer_id && !restored) view.item.append(this.feedbackForm(turn));
      } else {
        view.state.textContent = [turn.resolved ? T("understood", { q: turn.resolved }) : "", turn.note || ""].join(" ").trim();
        if (turn.answer_id && !restored) view.item.append(this.feedbackForm(turn));
      }
    }

    feedbackForm(turn) {
      const n = ++uid, state = el("p", { className: "status feedback-status", role: "status" });
      const comment = el("textarea", { id: `c${n}`, rows: 2, maxLength: 2000 });
      let helpful = null;
      const choices = [["yes", true], ["no", false]].map(([key, value]) => el("button", { type: "button", "aria-pressed": "false", "data-helpful": String(value) }, T(key)));
      const send = async () => {
        const said = comment.value.trim();
        const body = { answer_id: turn.answer_id, helpful, ...(said ? { comment: said } : {}) };
        let ok = false;
        try {
          const response = await this.post("/feedback", body);
          ok = response.ok;
        } catch (err) { ok = false; }
        state.textContent = ok ? T(said ? "commentThanks" : "thanks") : T("voteFailed");
        state.classList.toggle("error", !ok);
        if (!ok) { helpful = null; for (const b of choices) b.setAttribute("aria-pressed", "false"); }
      };
      for (const choice of choices) {
        choice.addEventListener("click", () => {
          helpful = choice.dataset.helpful === "true";
          for (const b of choices) b.setAttribute("aria-pressed", String(b === choice));
          send();
        });
      }
      const sendComment = el("button", { type: "submit", className: "light" }, T("sendComment"));
      const form = el("form", { className: "feedback" }, el("fieldset", {}, el("legend", {}, T("useful")), el("div", { className: "choices" }, ...choices), el("label", { for: `c${n}` }, T("comment")), comment, sendComment, state));
      form.addEventListener("submit", (event) => { event.preventDefault(); if (helpful !== null) send(); else choices[0].focus(); });
      return form;
    }

    handoffForm(turn) {
      const n = ++uid, state = el("p", { className: "status", role: "status" });
      const contact = el("input", { id: `hc${n}`, type: "text", maxLength: 300, autocomplete: "email" });
      const message = el("textarea", { id: `hm${n}`, rows: 2, maxLength: 2000 });
      const send = el("button", { type: "submit" }, T("handoffSend"));
      const form = el("form", { className: "handoff" }, el("fieldset", {}, el("legend", {}, T("handoff")), el("label", { for: `hc${n}` }, T("contact")), contact, el("label", { for: `hm${n}` }, T("handoffMessage")), message, send, state));
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        send.disabled = true;
        // the service rebuilds the transcript from what it answered: the widget names the answers, never their text
        const answer_ids = this.turns.map((t) => t.answer_id).filter(Boolean).slice(-50);
        const body = { reason: turn.handoff.reason, answer_ids, contact: contact.value.trim() || null, message: message.value.trim() || null, channel: options.channel === "page" ? "page" : "widget" };
        let ok = false;
        try {
          const response = await this.post("/handoff", body);
          ok = response.ok;
        } catch (err) { ok = false; }
        state.textContent = ok ? T("handoffDone") : T("handoffFailed");
        state.classList.toggle("error", !ok);
        send.disabled = ok;
      });
      return form;
    }
  }

  customElements.define("faq-assistant", FaqAssistant);
  const assistant = document.createElement("faq-assistant");
  const position = options.position || "bottom-right";
  if (position === "inline") {
    assistant.setAttribute("data-inline", "");
    assistant.style.cssText = "all: initial !important; display: block !important; " + FONT;
    const target = options.target ? document.querySelector(options.target) : null;
    if (target) {
      // the page's plain form (for browsers without JavaScript) gives way to the assistant
      target.querySelectorAll("[data-plain]").forEach((plain) => plain.remove());
      target.append(assistant);
    } else script.after(assistant);
  } else {
    assistant.setAttribute("data-floating", position === "bottom-left" ? "bottom-left" : "bottom-right");
    // the page's own styles of every element (*, div…) must not move or hide it
    assistant.style.cssText = "all: initial !important; position: fixed !important; bottom: 16px !important; z-index: 2147483000 !important; "
      + (position === "bottom-left" ? "left" : "right") + ": 16px !important; display: block !important; " + FONT;
    const attach = () => document.body.append(assistant);
    if (document.body) attach();
    else document.addEventListener("DOMContentLoaded", attach);
  }
})();
