/* The batch's review page: the header and every item in a table (sortable, filtered, searched, paged);
   sweeps.js draws the sweeps' grids, detail.js an item's detail. Data: window.RR_REVIEW (review/data.js),
   window.RR_REVIEW_LINKS (review/links.js). Hooks for tests and scripts: rows carry data-item-id and
   data-status, the search box is input[type=search], a sweep's grid carries data-sweep, its cells
   data-variant. */
"use strict";

(function () {
  const { el, append, percent, number, seconds, folderPath, shellWord, pager } = window.RRPage;
  const data = window.RR_REVIEW;
  const links = window.RR_REVIEW_LINKS || {};
  const app = document.getElementById("app");
  const STATUSES = ["failed", "pending", "done"];
  const PAGE_SIZES = [50, 100, 250, 1000];
  const NATURAL = new Intl.Collator("en", { numeric: true }); // horse_seed99 before horse_seed109
  const numericCell = (text) => el("td", { class: "numeric", text });
  const scoreColumn = (key, name, label, title) => ({
    key, label, title, numeric: true,
    sort: (item) => score(item, name),
    cell: (item) => numericCell(item.scores ? percent(score(item, name)) : "–"),
  });
  // Each column: its header, how it sorts (none: not sortable) and its cell. A new column is one entry here.
  const COLUMNS = [
    { key: "status", label: "Status", sort: (item) => STATUSES.indexOf(item.status), cell: statusCell },
    { key: "id", label: "Item", sort: (item) => item.id, compare: (x, y) => NATURAL.compare(x, y), cell: idCell },
    { key: "images", label: "Input · edge map · output · edges followed", cell: (item) => el("td", { class: "images" }, imageKinds(item).map(([kind, label]) => thumb(item, kind, label))) },
    { key: "seed", label: "Seed", sort: (item) => item.seed, numeric: true, cell: (item) => numericCell(item.seed ?? "–") },
    { key: "prompt", label: "Prompt", sort: (item) => prompt(item), cell: promptCell },
    scoreColumn("f1", "f1", "F1", "pixel-exact"),
    scoreColumn("f1t", "f1_tolerant", "F1 (tol.)", "within 0.75% of the diagonal"),
    scoreColumn("precision", "precision", "Precision"),
    scoreColumn("recall", "recall", "Recall"),
    { key: "seconds", label: "Seconds", sort: (item) => item.seconds, numeric: true, cell: (item) => numericCell(item.seconds !== undefined ? number(item.seconds, 2) : "–") },
  ];
  const IMAGE_KINDS = [
    ["input", "input"],
    ["canny", "edge map"],
    ["output", "output"],
    ["overlay", "edges followed"],
  ];

  const items = data.items;
  const byId = new Map(items.map((item) => [item.id, item]));
  const search = new Map(items.map((item) => [item.id, (item.id + "\n" + prompt(item)).toLowerCase()]));
  const state = { query: "", status: "all", sort: null, descending: false, page: 0, size: 100 };
  let shown = items; // the filtered, sorted items

  /** Every effective parameter of an item, in the order summary.json records them. */
  function params(item) {
    if (item.params === null) return {};
    const merged = Object.assign({}, data.common, item.params || {});
    const ordered = {};
    for (const key of data.param_order) if (key in merged) ordered[key] = merged[key];
    return Object.assign(ordered, merged);
  }
  function prompt(item) {
    return params(item).prompt || "";
  }
  /** A score by name (data.score_names), -1 where the item was not scored. */
  function score(item, name) {
    return item.scores ? item.scores[data.score_names.indexOf(name)] : -1;
  }
  function asset(item, kind) {
    if (!item.assets || !item.assets[kind]) return null;
    return `review/items/${encodeURIComponent(item.id)}/${data.asset_names[kind] || `${kind}.jpg`}`;
  }
  /** The image kinds an item shows: IMAGE_KINDS, then each control unit's map (control-1-depth: "map 1-depth"). */
  function imageKinds(item) {
    const units = Object.keys(item.assets || {}).filter((kind) => kind.startsWith("control-"));
    return IMAGE_KINDS.concat(units.map((kind) => [kind, `map ${kind.slice("control-".length)}`]));
  }
  function fileOf(item, suffix) {
    const file = (item.files || []).find(([name]) => name.endsWith(suffix));
    return file ? file[0] : null;
  }
  function statusBadge(status) {
    return el("span", { class: `badge status-${status}`, text: status });
  }
  function thumb(item, kind, label) {
    const src = asset(item, kind);
    if (!src) return el("span", { class: "thumb missing", title: `no ${label}`, text: "–" });
    const [width, height] = item.assets[kind];
    return el("img", { class: `thumb thumb-${kind}`, src, alt: `${label} of ${item.id}`, width, height, decoding: "async" });
  }

  // --- header -------------------------------------------------------------------------------------

  function header() {
    const model = data.model || {};
    const run = data.run || {};
    const counts = STATUSES.filter((status) => data.counts[status] || status === "failed").map((status) =>
      el("button", {
        type: "button",
        class: `count status-${status}`,
        "data-filter": status,
        onclick: () => setFilter(status),
        text: `${data.counts[status] || 0} ${status}`,
      }),
    );
    const device = run.device ? [run.device, run.device_name, run.dtype].filter(Boolean).join(", ") : "not recorded";
    const versions = Object.entries(data.versions || {}).map(([name, version]) => `${name} ${version}`).join(", ");
    const folder = folderPath("OUT");
    const nav = [
      ...data.files.summary.map((name) => el("a", { href: name, text: name })),
      ...data.files.overview.map((name) => el("a", { href: name, text: name })),
    ];
    return el(
      "header",
      { class: "page-header" },
      el("h1", { text: data.title }),
      el("p", { class: "muted path", text: data.manifest }),
      el(
        "dl",
        { class: "facts" },
        fact("Items", el("span", { class: "counts" }, counts, ` of ${items.length}`)),
        fact("Model", [model.name, model.base && model.base !== model.name ? `(${model.base})` : ""].join(" ")),
        fact("Wall time", run.wall_seconds !== undefined ? seconds(run.wall_seconds) : "not recorded"),
        fact("Started", run.started || "not recorded"),
        fact("Device", device),
        fact("Libraries", versions || "not recorded"),
        data.shard ? fact("Shard", data.shard) : null,
      ),
      comparisonLink(links.compare),
      el("nav", { class: "files", "aria-label": "the batch's files" }, "Files: ", nav.flatMap((link, index) => (index ? [" · ", link] : [link]))),
      el("p", { class: "command" }, "Open the whole batch in the Rerun viewer: ", el("code", { text: `rr-controlnet view ${shellWord(folder)}` })),
    );
  }

  /** The comparison in OUT/compare: its counts while it is of these outputs; once a run has changed them,
      marked out of date with when it was made and when the outputs changed. */
  function comparisonLink(compare) {
    if (!compare) return null;
    const baseline = compare.baseline ? ` against ${compare.baseline}` : "";
    const link = el("a", { href: compare.href, text: `Comparison${baseline}` });
    if (compare.stale) {
      const made = compare.made ? `made ${when(compare.made)}` : "made by an earlier version";
      const changed = compare.outputs_changed ? ` (last at ${when(compare.outputs_changed)})` : "";
      return el(
        "p",
        { class: "comparison-link stale" },
        link,
        " ",
        el("span", { class: "badge status-stale", text: "out of date" }),
        ` ${made}; the outputs have changed since${changed}: compare again for their changes.`,
      );
    }
    const counts = Object.entries(compare.counts || {})
      .filter(([, count]) => count)
      .map(([status, count]) => `${count} ${status}`)
      .join(", ");
    return el(
      "p",
      { class: "comparison-link" },
      link,
      counts ? `: ${counts}` : "",
      compare.passed === false ? el("span", { class: "badge status-changed", text: "changed" }) : "",
    );
  }

  /** A recorded time (ISO 8601, UTC) as a person reads it. */
  function when(text) {
    return String(text).replace("T", " ").replace(/\+00:00$/, " UTC");
  }

  function fact(term, value) {
    return el("div", {}, el("dt", { text: term }), el("dd", {}, value));
  }

  // --- the items' table ---------------------------------------------------------------------------

  const table = el("table", { class: "items", id: "items" });
  const pagerHolder = el("div", { class: "pager-holder" });
  const matchCount = el("span", { class: "muted", "aria-live": "polite" });

  function controls() {
    const onQuery = (query) => {
      state.query = query;
      state.page = 0;
      refresh();
    };
    return RRPage.listControls(STATUSES, "id or prompt", onQuery, setFilter, matchCount);
  }

  function setFilter(status) {
    state.status = status;
    state.page = 0;
    document.getElementById("status-filter").value = status;
    refresh();
    document.getElementById("items-title").scrollIntoView({ block: "start" });
  }

  function tableHead() {
    return el(
      "thead",
      {},
      el(
        "tr",
        {},
        COLUMNS.map((column) => {
          const sorted = state.sort === column.key;
          const attrs = { scope: "col", class: column.numeric ? "numeric" : "", "aria-sort": sorted ? (state.descending ? "descending" : "ascending") : null };
          if (!column.sort) return el("th", attrs, column.label);
          const arrow = sorted ? (state.descending ? " ▼" : " ▲") : "";
          return el("th", attrs, el("button", { type: "button", class: "sort", title: column.title ? `sort by ${column.label} (${column.title})` : `sort by ${column.label}`, onclick: () => sortBy(column.key), text: column.label + arrow }));
        }),
      ),
    );
  }

  function sortBy(key) {
    if (state.sort === key) state.descending = !state.descending;
    else Object.assign(state, { sort: key, descending: false }); // lowest first: the worst scores lead
    state.page = 0;
    refresh();
    const button = table.querySelector(`th[aria-sort] button`);
    if (button) button.focus();
  }

  function filtered() {
    let list = items;
    if (state.status !== "all") list = list.filter((item) => item.status === state.status);
    if (state.query) list = list.filter((item) => search.get(item.id).includes(state.query));
    if (state.sort) {
      const column = COLUMNS.find((candidate) => candidate.key === state.sort);
      const key = column.sort;
      const compare = column.compare || ((x, y) => (x < y ? -1 : 1));
      const direction = state.descending ? -1 : 1;
      list = list.slice().sort((a, b) => {
        const x = key(a);
        const y = key(b);
        const order = x === y ? 0 : x === undefined || x === null ? 1 : y === undefined || y === null ? -1 : compare(x, y);
        return order * direction || a.n - b.n;
      });
    }
    return list;
  }

  function statusCell(item) {
    return el("td", { class: "status" }, statusBadge(item.status), item.error ? el("div", { class: "error", title: item.error, text: item.error }) : null);
  }
  function idCell(item) {
    return el(
      "td",
      { class: "item-id" },
      el("a", { href: `#item=${encodeURIComponent(item.id)}`, text: item.id }),
      item.sweep ? el("div", { class: "muted small", text: data.sweeps[item.sweep[0]].source + " sweep" }) : null,
    );
  }
  function promptCell(item) {
    const text = prompt(item);
    return el("td", { class: "prompt", title: text }, el("div", { text: text || "(empty)" }));
  }

  function row(item) {
    return el("tr", { "data-item-id": item.id, "data-status": item.status }, COLUMNS.map((column) => column.cell(item)));
  }

  function refresh() {
    shown = filtered();
    const pages = Math.max(1, Math.ceil(shown.length / state.size));
    state.page = Math.min(state.page, pages - 1);
    const start = state.page * state.size;
    const body = el("tbody", {}, shown.slice(start, start + state.size).map(row));
    if (!shown.length) body.append(el("tr", { class: "empty" }, el("td", { colspan: COLUMNS.length, text: "No item matches." })));
    table.replaceChildren(tableHead(), body);
    matchCount.textContent = shown.length === items.length ? `${items.length} items` : `${shown.length} of ${items.length} items`;
    pagerHolder.replaceChildren(
      pager(shown.length, state.page, state.size, PAGE_SIZES, (page, size) => {
        Object.assign(state, { page, size });
        refresh();
      }, "items"),
    );
  }

  // --- the page -----------------------------------------------------------------------------------

  const main = el("main", {});
  const review = { data, items, byId, main, params, asset, thumb, fileOf, statusBadge, IMAGE_KINDS, imageKinds, shown: () => shown };
  const detail = window.RRDetail(review);
  document.title = data.title;
  append(
    main,
    header(),
    el("section", { class: "items-section", "aria-labelledby": "items-title" }, el("h2", { id: "items-title", text: "Items" }), controls(), el("div", { class: "table-scroll" }, table), pagerHolder),
  );
  app.append(main, detail.dialog);
  refresh();
  // The first rows are drawn by the frame after next: bench/scale.py reads this mark (ms since navigation).
  requestAnimationFrame(() => requestAnimationFrame(() => (window.rrReviewPainted = performance.now())));
  // Sweeps come after the first rows: a large batch's table is what a reader waits for first.
  const sweeps = window.RRSweeps(review);
  if (sweeps) main.insertBefore(sweeps, main.querySelector(".items-section"));
  detail.route();
  document.body.dataset.ready = "true";
})();
