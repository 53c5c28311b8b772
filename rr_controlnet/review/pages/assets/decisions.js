/* The comparison page's decisions: per changed or new item, accept or reject its new output (the control
   carries data-accept, the item's id), kept in this browser's local storage for this page; a filter by
   decision; and one action that shows and copies the command applying them
   (`rr-controlnet compare BASELINE NEW --accept ID[,ID...]`) and offers decisions.json
   (`... --accept-from decisions.json`). Runs after compare.js, through window.RRCompare. */
"use strict";

(function () {
  const { el, folderPath, shellWord } = window.RRPage;
  const data = window.RR_COMPARE;
  const ACCEPTABLE = ["changed", "new"];
  const STORE = `rr-controlnet-decisions:${location.pathname}`;
  const decisions = load(); // id -> "accept" | "reject"
  const filter = { decision: "all" };

  function load() {
    try {
      const stored = JSON.parse(localStorage.getItem(STORE) || "{}");
      return stored && typeof stored === "object" ? stored : {};
    } catch (error) {
      return {}; // storage refused (some browsers on file://): decisions last as long as the page
    }
  }

  function save() {
    try {
      localStorage.setItem(STORE, JSON.stringify(decisions));
    } catch (error) {
      /* kept in the page only */
    }
  }

  const acceptable = new Set(data.items.filter((item) => ACCEPTABLE.includes(item.status)).map((item) => item.id));
  const decisionOf = (id) => decisions[id] || (acceptable.has(id) ? "undecided" : "none");

  function decide(id, decision) {
    if (decisions[id] === decision) delete decisions[id];
    else decisions[id] = decision;
    save();
    summary.textContent = counted();
    window.RRCompare.refresh();
  }

  function control(id) {
    const button = (decision, label) =>
      el("button", { type: "button", class: `decision decision-${decision}`, "aria-pressed": decisions[id] === decision ? "true" : "false", onclick: () => decide(id, decision), text: label });
    return el("span", { class: "decisions", "data-accept": id, "data-decision": decisionOf(id) }, button("accept", "Accept"), button("reject", "Reject"));
  }

  function decorate(root) {
    for (const card of root.querySelectorAll("article[data-item-id]")) {
      const id = card.dataset.itemId;
      if (!acceptable.has(id) || card.querySelector(":scope [data-accept]")) continue;
      card.querySelector("h2").after(control(id));
    }
  }

  const accepted = () => [...acceptable].filter((id) => decisions[id] === "accept");

  function counted() {
    const ids = [...acceptable];
    const count = (decision) => ids.filter((id) => decisionOf(id) === decision).length;
    return `${count("accept")} accepted, ${count("reject")} rejected, ${count("undecided")} undecided`;
  }

  /** BASELINE and NEW as a shell in this folder's parent would name them, else as the page shows them. */
  function folder(shown) {
    const here = folderPath("");
    return here ? `${here}/${shown}` : shown;
  }

  function apply() {
    const ids = accepted();
    output.replaceChildren();
    if (!ids.length) {
      output.append(el("p", { class: "muted", text: "No item accepted yet: accept items above first." }));
      return;
    }
    const base = ["rr-controlnet", "compare", folder(data.baseline), folder(data.new)].map(shellWord).join(" ");
    const command = `${base} --accept ${shellWord(ids.join(","))}`;
    const file = JSON.stringify({ accept: ids, reject: Object.keys(decisions).filter((id) => decisions[id] === "reject") }, null, 2) + "\n";
    const download = el("a", { href: URL.createObjectURL(new Blob([file], { type: "application/json" })), download: "decisions.json", class: "download-decisions", text: "decisions.json" });
    const copied = el("span", { class: "muted", "aria-live": "polite" });
    output.append(
      el("pre", { class: "accept-command", text: command }),
      el("p", {}, "Or download ", download, ` and run ${base} --accept-from decisions.json `, copied),
    );
    if (navigator.clipboard) {
      navigator.clipboard.writeText(command).then(() => (copied.textContent = "(the command is copied)"), () => (copied.textContent = "(select the command to copy it)"));
    }
  }

  const summary = el("span", { class: "muted decision-counts", text: counted() });
  const output = el("div", { class: "accept-output" });
  const decisionSelect = el(
    "select",
    { id: "decision-filter", "aria-label": "Show items with decision", onchange: (event) => { filter.decision = event.target.value; window.RRCompare.refresh(); } },
    ["all", "accept", "reject", "undecided"].map((value) => el("option", { value, text: value === "all" ? "any decision" : value === "accept" ? "accepted" : value === "reject" ? "rejected" : value })),
  );
  if (acceptable.size) {
    const bar = el(
      "section",
      { class: "decisions-bar", "aria-label": "accepting items" },
      el("label", {}, "Decision ", decisionSelect),
      " ",
      el("button", { type: "button", class: "apply-decisions", onclick: apply, text: "Apply decisions…" }),
      " ",
      summary,
      output,
    );
    document.querySelector(".compare-list").before(bar);
    window.RRCompare.filters.push((item) => filter.decision === "all" || decisionOf(item.id) === filter.decision);
  }
  const app = document.getElementById("app");
  new MutationObserver(() => decorate(app)).observe(app, { childList: true, subtree: true });
  window.RRCompare.refresh();
  decorate(app);
})();
