/* The batch page's sweeps: one grid per swept item, whose rows and columns the reader picks among its
   swept fields (the other fields become selectors); each cell a variant's output and its tolerant F1,
   opening that variant's detail. Large grids, and sweeps past the first few, come folded (still in the
   page, closed). The grid carries data-sweep="<source id>", its cells data-variant.
   review.js calls window.RRSweeps with what it knows of the batch. */
"use strict";

window.RRSweeps = function (review) {
  const { el, percent } = window.RRPage;
  const { data, items, asset, thumb } = review;
  // Past these, grids come folded (click a title to open one), so that they never push the items' table
  // far down the page: the first OPEN_SWEEPS sweeps of up to OPEN_VARIANTS variants each open, the list
  // itself folded past FOLDED_LIST sweeps.
  const OPEN_SWEEPS = 3;
  const OPEN_VARIANTS = 24;
  const FOLDED_LIST = 10;

  function sweepsSection() {
    if (!data.sweeps.length) return null;
    const variants = data.sweeps.map(() => new Map());
    for (const item of items) {
      if (item.sweep) variants[item.sweep[0]].set(item.sweep[1].join(","), item);
    }
    const opened = (index) => index < OPEN_SWEEPS && variants[index].size <= OPEN_VARIANTS;
    const cards = data.sweeps.map((sweep, index) => sweepCard(sweep, variants[index], opened(index)));
    const title = el("h2", { id: "sweeps-title", text: `Sweeps (${data.sweeps.length})` });
    const about = el("p", { class: "muted", text: "Each cell: a variant's output and the F1 of its edges within 0.75% of the image diagonal (the tolerant F1). Pick which swept fields go on rows and columns; a cell opens the variant." });
    const folded = data.sweeps.length > FOLDED_LIST;
    return el(
      "section",
      { class: "sweeps", "aria-labelledby": "sweeps-title" },
      el("details", { class: "sweep-list", open: !folded }, el("summary", {}, title), about, cards),
    );
  }

  function sweepCard(sweep, variants, open) {
    const axes = sweep.axes.map((fields) => fields.join(" + "));
    const short = sweep.names;
    const choice = { rows: 0, columns: axes.length > 1 ? 1 : -1, fixed: axes.map(() => 0) };
    const first = variants.values().next().value;
    const grid = el("div", { class: "sweep-grid-holder" });
    const selectors = el("div", { class: "sweep-selectors" });
    const id = `sweep-${sweep.source}`;

    function axisSelect(role, label, allowNone) {
      const options = axes.map((name, axis) => el("option", { value: axis, text: name === short[axis] ? name : `${name} (${short[axis]})` }));
      if (allowNone) options.push(el("option", { value: -1, text: "(none)" }));
      const select = el("select", { "data-axis-role": role, "aria-label": `${label} of ${sweep.source}'s grid` }, options);
      select.value = String(choice[role]);
      select.addEventListener("change", () => {
        const other = role === "rows" ? "columns" : "rows";
        const picked = Number(select.value);
        if (picked === choice[other]) choice[other] = choice[role]; // swapping the two
        choice[role] = picked;
        draw();
      });
      return el("label", {}, `${label} `, select);
    }
    const rowsSelect = axisSelect("rows", "Rows", false);
    const columnsSelect = axisSelect("columns", "Columns", true);

    function draw() {
      rowsSelect.querySelector("select").value = String(choice.rows);
      columnsSelect.querySelector("select").value = String(choice.columns);
      selectors.replaceChildren(
        ...axes.map((name, axis) => {
          if (axis === choice.rows || axis === choice.columns) return null;
          const select = el(
            "select",
            { "data-axis": axis, "aria-label": `${name} of ${sweep.source}'s grid`, onchange: (event) => ((choice.fixed[axis] = Number(event.target.value)), draw()) },
            sweep.labels[axis].map((label, index) => el("option", { value: index, text: label, selected: index === choice.fixed[axis] })),
          );
          return el("label", {}, `${name} `, select);
        }).filter(Boolean),
      );
      const rowCount = sweep.shape[choice.rows];
      const columnCount = choice.columns >= 0 ? sweep.shape[choice.columns] : 1;
      const head = el(
        "tr",
        {},
        el("th", { scope: "col", class: "corner", text: choice.columns >= 0 ? `${short[choice.rows]} \\ ${short[choice.columns]}` : short[choice.rows] }),
        Array.from({ length: columnCount }, (_, column) =>
          el("th", { scope: "col", title: choice.columns >= 0 ? sweep.values[choice.columns][column] : null, text: choice.columns >= 0 ? sweep.labels[choice.columns][column] : "output" }),
        ),
      );
      const rows = Array.from({ length: rowCount }, (_, row) =>
        el(
          "tr",
          {},
          el("th", { scope: "row", title: sweep.values[choice.rows][row], text: sweep.labels[choice.rows][row] }),
          Array.from({ length: columnCount }, (_, column) => {
            const coordinates = choice.fixed.slice();
            coordinates[choice.rows] = row;
            if (choice.columns >= 0) coordinates[choice.columns] = column;
            return el("td", {}, sweepCell(variants.get(coordinates.join(","))));
          }),
        ),
      );
      grid.replaceChildren(
        el("table", { class: "sweep-grid", "data-sweep": sweep.source, "aria-label": `${sweep.source}: variants` }, el("thead", {}, head), el("tbody", {}, rows)),
      );
    }
    draw();
    const count = variants.size;
    return el(
      "section",
      { class: "sweep", id, "aria-labelledby": `${id}-title` },
      el(
        "details",
        { open },
        el("summary", {}, el("h3", { id: `${id}-title`, text: `${sweep.source}: ${count} variant${count === 1 ? "" : "s"} of ${axes.join(" × ")}` })),
        el("div", { class: "sweep-controls" }, rowsSelect, columnsSelect, selectors),
        el(
          "div",
          { class: "sweep-body" },
          first
            ? el(
                "div",
                { class: "sweep-source" },
                el("figure", {}, thumb(first, "input", "input"), el("figcaption", { text: "input" })),
                el("figure", {}, thumb(first, "canny", "edge map"), el("figcaption", { text: "edge map" })),
              )
            : null,
          grid,
        ),
      ),
    );
  }

  function sweepCell(item) {
    if (!item) return el("span", { class: "muted", text: "–" });
    const caption = item.scores ? `F1 ${percent(item.scores[window.RR_REVIEW.score_names.indexOf("f1_tolerant")])}` : item.status;
    const image = asset(item, "output")
      ? el("img", { src: asset(item, "output"), alt: `output of ${item.id}`, loading: "lazy", decoding: "async", width: item.assets.output[0], height: item.assets.output[1] })
      : el("span", { class: `cell-status status-${item.status}`, text: item.status });
    return el("a", { href: `#item=${encodeURIComponent(item.id)}`, class: "sweep-cell", "data-variant": item.id, title: item.id }, image, el("span", { class: "cell-caption", text: caption }));
  }

  return sweepsSection();
};
