"use strict";
// The gap report for the team that owns the FAQ: read the gaps, resolve one (new entry, alternate phrasing,
// out of scope, dismiss). The admin token is asked once and kept for the tab only (sessionStorage).
(() => {
  const $ = (id) => document.getElementById(id);
  const status = $("status"), list = $("gaps"), summary = $("summary"), tokenForm = $("token-form");
  const REASONS = { declined: "refusées", not_useful: "jugées inutiles", low_confidence: "peu sûres" };
  const ACTIONS = [
    ["new_entry", "Nouvelle entrée de la FAQ"],
    ["alternate", "Autre formulation d'une entrée existante"],
    ["out_of_scope", "Hors du champ de la FAQ"],
    ["dismiss", "Ignorer"],
  ];

  const el = (tag, props = {}, text = "") => {
    const node = document.createElement(tag);
    Object.assign(node, props);
    if (text) node.textContent = text;
    return node;
  };
  const say = (text, error = false) => {
    status.textContent = text;
    status.classList.toggle("error", error);
  };
  const token = () => sessionStorage.getItem("rag-admin-token");

  async function call(path, options = {}) {
    const headers = { Authorization: "Bearer " + token(), "Content-Type": "application/json" };
    const response = await fetch(path, { ...options, headers });
    const body = await response.json().catch(() => ({}));
    if (response.status === 401 || response.status === 403) {
      sessionStorage.removeItem("rag-admin-token");
      tokenForm.hidden = false;
      throw new Error("Jeton refusé : saisissez le jeton d'administration.");
    }
    if (!response.ok) throw new Error((body.error && body.error.message) || "Erreur " + response.status);
    return body;
  }

  function field(id, label, input) {
    const box = el("div");
    input.id = id;
    box.append(el("label", { htmlFor: id }, label), input);
    return box;
  }

  function resolveForm(gap, n) {
    const form = el("form", { className: "resolve" });
    const fieldset = el("fieldset");
    fieldset.append(el("legend", {}, "Résoudre cette lacune"));
    const choices = el("div", { className: "actions" });
    ACTIONS.forEach(([value, label], i) => {
      const id = `gap-${n}-action-${value}`;
      const radio = el("input", { type: "radio", name: `action-${n}`, value, id, checked: i === 0 });
      const row = el("div", { className: "choice" });
      row.append(radio, el("label", { htmlFor: id }, label));
      choices.append(row);
    });
    const question = el("input", { value: gap.title || gap.question });
    const answer = el("textarea", { rows: 4 });
    const url = el("input", { type: "url" });
    const newEntry = el("div");
    newEntry.append(
      field(`gap-${n}-question`, "Question de la nouvelle entrée", question),
      field(`gap-${n}-answer`, "Réponse", answer),
      field(`gap-${n}-url`, "Adresse de la page (facultatif)", url),
    );
    const entry = el("select");
    for (const near of gap.nearest_entries) entry.append(el("option", { value: near.id }, near.question || near.id));
    const alternate = field(`gap-${n}-entry`, "Entrée dont ces questions sont d'autres formulations", entry);
    alternate.hidden = true;
    const show = () => {
      const chosen = form.querySelector(`input[name="action-${n}"]:checked`).value;
      newEntry.hidden = chosen !== "new_entry";
      alternate.hidden = chosen !== "alternate";
    };
    choices.addEventListener("change", show);
    const submit = el("button", { type: "submit" }, "Appliquer");
    fieldset.append(choices, newEntry, alternate, submit);
    form.append(fieldset);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const action = form.querySelector(`input[name="action-${n}"]:checked`).value;
      const body = { action };
      if (action === "new_entry") Object.assign(body, { question: question.value, answer: answer.value, url: url.value || null });
      if (action === "alternate") body.entry_id = entry.value;
      submit.disabled = true;
      try {
        const done = await call(`admin/gaps/${encodeURIComponent(gap.id)}/resolve`, { method: "POST", body: JSON.stringify(body) });
        say(done.version ? `Lacune résolue ; la FAQ est republiée (version ${done.version}).` : "Lacune résolue.");
        await load();
      } catch (err) {
        say(err.message, true);
        submit.disabled = false;
      }
    });
    return form;
  }

  function render(report) {
    list.replaceChildren();
    summary.textContent = report.count
      ? `${report.count} lacune(s), ${report.questions} question(s) en attente.`
      : "Aucune lacune : toutes les questions ont trouvé une réponse jugée utile.";
    report.gaps.forEach((gap, n) => {
      const item = el("li", { className: "gap" });
      const title = el("h3", {}, gap.title || gap.question);
      const reasons = Object.entries(gap.reasons).map(([k, v]) => `${v} ${REASONS[k] || k}`).join(", ");
      const kind = gap.kind === "missing_entry" ? "entrée manquante" : "formulation non reconnue";
      const facts = el("p", { className: "muted" },
        `${gap.size} question(s) — ${reasons} — ${kind} — du ${gap.first_seen.slice(0, 10)} au ${gap.last_seen.slice(0, 10)}`);
      const examples = el("details");
      examples.append(el("summary", {}, "Questions posées"));
      const ul = el("ul");
      for (const q of gap.questions) ul.append(el("li", {}, q));
      examples.append(ul);
      const near = el("p", { className: "muted" }, "Entrées les plus proches : ");
      gap.nearest_entries.forEach((entry, i) => {
        if (i) near.append(", ");
        near.append(el("a", { href: entry.url || `/entries/${entry.id}` }, entry.question || entry.id));
      });
      item.append(title, facts, examples, near, resolveForm(gap, n));
      list.append(item);
    });
  }

  async function load() {
    try {
      render(await call("admin/gaps"));
      tokenForm.hidden = true;
    } catch (err) {
      say(err.message, true);
    }
  }

  tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("rag-admin-token", $("token").value);
    $("token").value = "";
    say("");
    load();
  });
  if (token()) load();
  else tokenForm.hidden = false;
})();
