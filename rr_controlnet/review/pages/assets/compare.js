/* The comparison's review page: statuses worst first with their reasons; per item both outputs (a wipe
   slider and a toggle flick between them), their difference heatmap, the latents' divergence by step
   and the parameters that differ. Data: window.RR_COMPARE (review/data.js). Hooks: every item's card
   carries data-item-id and data-status (same, changed, new, missing, failed). */
"use strict";

(function () {
  const { el, svg, append, percent, valueText, pager, scaledClass } = window.RRPage;
  const data = window.RR_COMPARE;
  const app = document.getElementById("app");
  const STATUSES = data.statuses; // worst first, as compare orders them
  const PAGE_SIZES = [10, 25, 50, 100];
  const state = { query: "", status: "all", page: 0, size: 25 };
  const list = el("div", { class: "compare-list" });
  const pagerHolder = el("div", { class: "pager-holder" });
  const matchCount = el("span", { class: "muted", "aria-live": "polite" });

  function image(item, role) {
    if (!item.assets || !item.assets[role]) return null;
    return `review/items/${encodeURIComponent(item.id)}/${role}.jpg`;
  }

  function header() {
    const counts = STATUSES.filter((status) => data.counts[status]).map((status) =>
      el("button", { type: "button", class: `count status-${status}`, "data-filter": status, onclick: () => setFilter(status), text: `${data.counts[status]} ${status}` }),
    );
    const limits = data.thresholds;
    const settings = Object.entries(data.settings_changed || {});
    return el(
      "header",
      { class: "page-header" },
      el("h1", { text: data.title }),
      el("p", { class: "muted path", text: `${data.baseline} → ${data.new}` }),
      el(
        "p",
        { class: "verdict" },
        el("span", { class: `badge ${data.passed ? "status-same" : "status-changed"}`, text: data.passed ? "passed" : "changed" }),
        " ",
        el("span", { class: "counts" }, counts),
      ),
      el("p", { class: "muted", text: `same: cosine distance ≤ ${limits.max_cosine_distance} and mean difference ≤ ${limits.max_mean_difference} of 255 levels; a step's latents part past a cosine distance of ${limits.divergence_cosine_distance}.` }),
      settings.length
        ? el("p", { class: "warning" }, "Settings that differ: ", settings.map(([key, [old, now]]) => `${key}: ${valueText(old)} → ${valueText(now)}`).join("; "))
        : null,
      data.batch_page ? el("p", {}, el("a", { href: data.batch_page, text: "The new run's review page" })) : null,
    );
  }

  function controls() {
    const onQuery = (query) => {
      state.query = query;
      state.page = 0;
      refresh();
    };
    return RRPage.listControls(STATUSES, "id", onQuery, setFilter, matchCount);
  }

  function setFilter(status) {
    state.status = status;
    state.page = 0;
    document.getElementById("status-filter").value = status;
    refresh();
  }

  function flicker(item) {
    const baseline = image(item, "baseline");
    const fresh = image(item, "new");
    if (!baseline || !fresh) {
      const only = fresh || baseline;
      if (!only) return el("div", { class: "placeholder", text: "no output to show" });
      const role = fresh ? "new" : "baseline";
      const caption = !fresh && item.status === "failed" ? "baseline output: the new run has none (the reason is above)" : `${role} output only`;
      return el("figure", {}, el("img", { src: only, alt: `${role} output of ${item.id}`, class: `large ${scaledClass(item.assets[role])}` }), el("figcaption", { text: caption }));
    }
    const [width, height] = item.assets.new;
    const pixels = scaledClass(item.assets.new);
    const top = el("img", { src: fresh, alt: `new output of ${item.id}`, class: `flick-new ${pixels}`, width, height });
    const bottom = el("img", { src: baseline, alt: `baseline output of ${item.id}`, class: `flick-baseline ${pixels}`, width, height });
    const caption = el("figcaption", {});
    const slider = el("input", { type: "range", min: 0, max: 100, value: 50, "aria-label": `wipe between the baseline and the new output of ${item.id}` });
    const toggle = el("button", { type: "button", class: "flick-toggle" });
    function wipe(value) {
      slider.value = String(value);
      top.style.clipPath = `inset(0 0 0 ${value}%)`;
      caption.textContent = value >= 100 ? "baseline" : value <= 0 ? "new" : `baseline ◀ ${value}% | ${100 - value}% ▶ new`;
      toggle.textContent = value >= 100 ? "Show new" : "Show baseline";
      toggle.setAttribute("aria-pressed", value >= 100 ? "true" : "false");
    }
    toggle.addEventListener("click", () => wipe(Number(slider.value) >= 100 ? 0 : 100));
    slider.addEventListener("input", () => wipe(Number(slider.value)));
    wipe(50);
    return el(
      "figure",
      { class: "flick" },
      el("div", { class: "flick-stage", style: `aspect-ratio:${width}/${height}` }, bottom, top),
      el("div", { class: "flick-controls" }, toggle, slider),
      caption,
    );
  }

  function heatmap(item) {
    const src = image(item, "heatmap");
    if (!src) return null;
    return el(
      "figure",
      {},
      el("img", { src, alt: `difference heatmap of ${item.id}`, class: `large heatmap ${scaledClass(item.assets.heatmap)}` }),
      el("figcaption", { text: "|new − baseline|: 64 levels and up white hot" }),
    );
  }

  /** The latents' RMS difference at every step, with the step where the runs part. */
  function divergenceChart(item) {
    if (!item.steps) return null;
    if (!item.divergence) return el("p", { class: "muted", text: `The latents agree at all ${item.steps} steps.` });
    const width = 320, height = 140, left = 46, bottom = 24, top = 10, right = 10;
    const steps = item.divergence.map(([step]) => step);
    const rms = item.divergence.map(([, value]) => value);
    const most = Math.max(...rms) || 1;
    const lastStep = Math.max(...steps) || 1;
    const x = (step) => left + ((width - left - right) * step) / lastStep;
    const y = (value) => height - bottom - ((height - bottom - top) * value) / most;
    const points = item.divergence.map(([step, value]) => `${x(step).toFixed(1)},${y(value).toFixed(1)}`).join(" ");
    const parts = [
      svg("title", {}, `RMS difference of the latents by step for ${item.id}`),
      svg("line", { x1: left, y1: height - bottom, x2: width - right, y2: height - bottom, class: "axis" }),
      svg("line", { x1: left, y1: top, x2: left, y2: height - bottom, class: "axis" }),
      svg("text", { x: left - 4, y: top + 8, class: "tick", "text-anchor": "end" }, most.toPrecision(2)),
      svg("text", { x: left - 4, y: height - bottom, class: "tick", "text-anchor": "end" }, "0"),
      svg("text", { x: left, y: height - 6, class: "tick" }, `step ${steps[0]}`),
      svg("text", { x: width - right, y: height - 6, class: "tick", "text-anchor": "end" }, `step ${lastStep}`),
      svg("polyline", { points, class: "series" }),
      item.divergence.map(([step, value, cosine]) => svg("circle", { cx: x(step).toFixed(1), cy: y(value).toFixed(1), r: 2.5, class: "point" }, svg("title", {}, `step ${step}: RMS ${value}, cosine distance ${cosine}`))),
    ];
    if (item.first_divergent_step !== undefined) {
      const at = x(item.first_divergent_step);
      parts.push(svg("line", { x1: at, y1: top, x2: at, y2: height - bottom, class: "marker" }));
      parts.push(svg("text", { x: Math.min(at + 4, width - 90), y: top + 10, class: "tick marker-label" }, `parts at step ${item.first_divergent_step}`));
    }
    return el(
      "figure",
      { class: "chart" },
      svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": `latent divergence of ${item.id} by step` }, parts),
      el("figcaption", { text: "RMS difference of the latents at each step" }),
    );
  }

  function metrics(item) {
    const rows = [];
    rows.push(...(item.image_rows || [])); // labels and values as the comparison's one table of metrics words them
    if (item.size) rows.push(["size (baseline, new)", item.size.map((size) => (size ? size.join("×") : "–")).join(", ")]);
    for (const [key, change] of Object.entries(item.adherence || {})) rows.push([`${key} change`, (change >= 0 ? "+" : "") + percent(change)]);
    if (!rows.length) return null;
    return el("table", { class: "kv" }, el("tbody", {}, rows.map(([key, value]) => el("tr", {}, el("th", { scope: "row", text: key }), el("td", { text: value })))));
  }

  const shown = (value) => (value === "" ? "(empty)" : valueText(value));

  function paramsTable(item) {
    const changed = Object.entries(item.params || {});
    if (!changed.length) return null;
    return el(
      "table",
      { class: "params-changed" },
      el("caption", { text: "Parameters that differ" }),
      el("thead", {}, el("tr", {}, el("th", { scope: "col", class: "param-name", text: "parameter" }), el("th", { scope: "col", text: "baseline" }), el("th", { scope: "col", text: "new" }))),
      el("tbody", {}, changed.map(([key, [old, now]]) => el("tr", {}, el("th", { scope: "row", text: key }), el("td", { text: shown(old) }), el("td", { text: shown(now) })))),
    );
  }

  function card(item) {
    const title = `compare-${item.id}`;
    return el(
      "article",
      { class: `compare-item status-${item.status}`, "data-item-id": item.id, "data-status": item.status, "aria-labelledby": title },
      el(
        "h2",
        { id: title },
        item.id,
        " ",
        el("span", { class: `badge status-${item.status}`, text: item.status }),
        data.batch_page && item.status !== "missing" ? el("a", { class: "small", href: `${data.batch_page}#item=${encodeURIComponent(item.id)}`, text: "details in the new run" }) : null,
      ),
      item.notes.length ? el("ul", { class: "notes" }, item.notes.map((note) => el("li", { text: note }))) : null,
      el("div", { class: "compare-body" }, flicker(item), heatmap(item), el("div", { class: "compare-facts" }, divergenceChart(item), metrics(item))),
      paramsTable(item), // full width: a prompt can be long
    );
  }

  function refresh() {
    let shown = data.items;
    if (state.status !== "all") shown = shown.filter((item) => item.status === state.status);
    if (state.query) shown = shown.filter((item) => item.id.toLowerCase().includes(state.query));
    for (const keeps of window.RRCompare.filters) shown = shown.filter(keeps);
    const pages = Math.max(1, Math.ceil(shown.length / state.size));
    state.page = Math.min(state.page, pages - 1);
    const start = state.page * state.size;
    list.replaceChildren(...shown.slice(start, start + state.size).map(card));
    if (!shown.length) list.append(el("p", { class: "muted", text: "No item matches." }));
    matchCount.textContent = shown.length === data.items.length ? `${shown.length} items` : `${shown.length} of ${data.items.length} items`;
    pagerHolder.replaceChildren(pager(shown.length, state.page, state.size, PAGE_SIZES, (page, size) => {
      Object.assign(state, { page, size });
      refresh();
    }, "items"));
  }

  /** #item=ID (the links of the pull request's comment): the page of the list that holds it, scrolled to. */
  function showLinkedItem() {
    const linked = new URLSearchParams(location.hash.slice(1)).get("item");
    const index = data.items.findIndex((item) => item.id === linked);
    if (index < 0) return;
    state.page = Math.floor(index / state.size);
    refresh();
    const scroll = () => {
      const found = [...list.querySelectorAll("article[data-item-id]")].find((node) => node.dataset.itemId === linked);
      if (found) found.scrollIntoView();
    };
    scroll();
    window.addEventListener("load", scroll, { once: true }); // again once the images above it have their size
  }

  window.RRCompare = { refresh, filters: [] }; // for decisions.js: more filters, and drawing again
  document.title = data.title;
  append(app, el("main", {}, header(), el("section", { "aria-label": "items, worst first" }, controls(), list, pagerHolder)));
  refresh();
  showLinkedItem();
  document.body.dataset.ready = "true";
})();
