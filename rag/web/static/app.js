"use strict";
// Ask a question, show the answer as it streams (Server-Sent Events over fetch), then ask for feedback.
(() => {
  const $ = (id) => document.getElementById(id);
  const form = $("ask-form"), question = $("question"), button = $("ask-button");
  const result = $("result"), status = $("status"), answerBox = $("answer");
  const sources = $("sources"), sourcesTitle = $("sources-title");
  const passagesBox = $("passages-box"), passages = $("passages");
  const feedbackForm = $("feedback-form"), feedbackStatus = $("feedback-status");
  let answerId = null, helpful = null, passageList = [];

  const headers = () => {
    const h = { "Content-Type": "application/json", "X-Rag-Channel": "page" };
    const key = $("api-key").value || localStorage.getItem("rag-api-key");
    if (key) h.Authorization = "Bearer " + key;
    return h;
  };

  // Only web and relative links become clickable (never javascript: or data:).
  const safeHref = (url) => {
    try {
      const parsed = new URL(url, window.location.href);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : "#";
    } catch (err) {
      return "#";
    }
  };

  const el = (tag, props = {}, text = "") => {
    const node = document.createElement(tag);
    Object.assign(node, props);
    if (text) node.textContent = text;
    return node;
  };

  // Render text with [n] markers as links to the numbered sources, and URLs as links.
  function renderAnswer(text) {
    answerBox.replaceChildren();
    let last = 0;
    for (const match of text.matchAll(/\[(\d{1,3})\]|(https?:\/\/[^\s<>"')\]]+)/g)) {
      answerBox.append(text.slice(last, match.index));
      const hit = match[1] ? passageList[Number(match[1]) - 1] : null;
      if (match[2]) {
        const url = match[2].replace(/[.,;:!?]+$/, "");
        answerBox.append(el("a", { href: safeHref(url), rel: "noopener" }, url), match[2].slice(url.length));
      } else if (hit) {
        const n = match[1];
        const link = el("a", { href: safeHref(hit.url), className: "cite", title: hit.question || "Source " + n }, "[" + n + "]");
        link.setAttribute("aria-label", "source " + n);
        answerBox.append(link);
      } else {
        answerBox.append(match[0]);
      }
      last = match.index + match[0].length;
    }
    answerBox.append(text.slice(last));
  }

  function showPassages(list) {
    passageList = list;
    passages.replaceChildren(...list.map((p) => {
      const li = el("li");
      li.append(el("a", { href: safeHref(p.url) }, p.question || "Entrée " + p.id), el("p", {}, p.text));
      return li;
    }));
    passagesBox.hidden = list.length === 0;
  }

  function showSources(citations) {
    sources.replaceChildren(...citations.map((c) => {
      const li = el("li", { value: c.n, id: "source-" + c.n });
      li.append(el("a", { href: safeHref(c.url) }, c.question || c.url));
      return li;
    }));
    sourcesTitle.hidden = citations.length === 0;
  }

  // A declined question: say so, and point to the support when the service names one.
  function showDeclined() {
    setStatus("La FAQ ne répond pas à cette question.");
    const support = result.dataset.support;
    if (support) {
      status.append(" ", el("a", { href: safeHref(support) }, "Contacter le support"));
    }
  }

  function setStatus(text, isError = false) {
    status.textContent = text;
    status.classList.toggle("error", isError);
  }

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
        let event = "message", data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
      }
    }
  }

  async function ask(text) {
    result.hidden = false;
    result.setAttribute("aria-busy", "true");
    button.disabled = true;
    answerId = null; helpful = null;
    feedbackForm.hidden = true; feedbackStatus.textContent = "";
    for (const b of feedbackForm.querySelectorAll("[data-helpful]")) b.setAttribute("aria-pressed", "false");
    $("comment").value = "";
    answerBox.replaceChildren(); showSources([]); showPassages([]);
    setStatus("Recherche dans la FAQ…");
    let streamed = "";
    try {
      const filters = {};
      for (const select of document.querySelectorAll("select[data-facet]")) {
        if (select.value) filters[select.dataset.facet] = select.value;
      }
      const body = { query: text, stream: true, filters };
      const response = await fetch("/ask", { method: "POST", headers: headers(), body: JSON.stringify(body) });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        if (response.status === 401) $("key-row").hidden = false;
        setStatus((body.error && body.error.message) || "Erreur " + response.status, true);
        return;
      }
      for await (const { event, data } of sseEvents(response)) {
        if (event === "passages") {
          showPassages(data.passages);
          setStatus(data.abstained ? "" : "Rédaction de la réponse…");
        } else if (event === "delta") {
          streamed += data.text;
          renderAnswer(streamed);
        } else if (event === "reset") {
          streamed = "";
          renderAnswer("");
        } else if (event === "done") {
          renderAnswer(data.answer);
          showSources(data.citations);
          answerId = data.answer_id;
          if (data.abstained) showDeclined();
          else setStatus([data.resolved ? "Question comprise : « " + data.resolved + " »." : "", data.note || ""].join(" ").trim());
          feedbackForm.hidden = false;
        }
      }
    } catch (err) {
      setStatus("Le service ne répond pas. Réessayez dans un instant.", true);
    } finally {
      button.disabled = false;
      result.setAttribute("aria-busy", "false");
    }
  }

  async function sendFeedback() {
    if (!answerId || helpful === null) {
      feedbackStatus.textContent = "Choisissez d'abord Oui ou Non.";
      return;
    }
    const comment = $("comment").value.trim();
    const body = { answer_id: answerId, helpful, ...(comment ? { comment } : {}) };
    let ok = false;
    try {
      const response = await fetch("/feedback", { method: "POST", headers: headers(), body: JSON.stringify(body) });
      ok = response.ok;
    } catch (err) {
      ok = false;  // the service is unreachable
    }
    feedbackStatus.textContent = ok ? "Merci pour votre retour." : "Votre retour n'a pas pu être enregistré. Réessayez dans un instant.";
    feedbackStatus.classList.toggle("error", !ok);
    if (!ok) {
      helpful = null;
      for (const b of feedbackForm.querySelectorAll("[data-helpful]")) b.setAttribute("aria-pressed", "false");
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = question.value.trim();
    if (!text) { setStatus("Écrivez une question.", true); result.hidden = false; question.focus(); return; }
    if ($("api-key").value) localStorage.setItem("rag-api-key", $("api-key").value);
    ask(text);
  });
  question.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
  });
  for (const choice of feedbackForm.querySelectorAll("[data-helpful]")) {
    choice.addEventListener("click", () => {
      helpful = choice.dataset.helpful === "true";
      for (const b of feedbackForm.querySelectorAll("[data-helpful]")) b.setAttribute("aria-pressed", String(b === choice));
      sendFeedback();
    });
  }
  feedbackForm.addEventListener("submit", (event) => { event.preventDefault(); sendFeedback(); });
  for (const example of document.querySelectorAll("button.example")) {
    example.addEventListener("click", () => { question.value = example.textContent; form.requestSubmit(); });
  }
})();
