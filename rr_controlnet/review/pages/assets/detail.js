/* The batch page's item detail: the images large and side by side, the denoising as an animation and a
   filmstrip of its step previews, every parameter, the scores, its files, the PNG infotext (from the
   item's info.js, loaded when opened) and the command that opens it in the viewer. Opened by the URL's
   #item=<id>; Escape closes it, the arrow keys step through the items as the table lists them.
   review.js calls window.RRDetail with what it knows of the batch and gets back the dialog and route(). */
"use strict";

window.RRDetail = function (review) {
  const { el, percent, number, bytes, valueText, folderPath, shellWord, scaledClass } = window.RRPage;
  const { data, byId, main, params, asset, fileOf, statusBadge, imageKinds } = review;
  const infos = new Map(); // item id -> its info.js, once loaded
  let player = null; // the open detail's animation timer
  let returnFocus = null;

  const dialog = el("div", { class: "detail", role: "dialog", "aria-modal": "true", "aria-labelledby": "detail-title", hidden: true });

  window.rrReviewItem = function (info) {
    infos.set(info.id, info);
    const holder = dialog.querySelector(`[data-infotext="${CSS.escape(info.id)}"]`);
    if (holder) holder.textContent = info.infotext || "(the PNG has no parameters text)";
  };

  function loadInfo(item) {
    if (infos.has(item.id) || !item.assets) return;
    infos.set(item.id, null);
    document.head.append(el("script", { src: `review/items/${encodeURIComponent(item.id)}/info.js` }));
  }

  /** Which control unit the adherence scores are against; units of other types are not scored (their maps are not edges). */
  function unitsScored(item) {
    const units = Object.entries(params(item).controls || {});
    if (!units.length) return null;
    const scored = units.find(([, unit]) => unit.type === "canny");
    const others = units.filter(([, unit]) => unit.type !== "canny").map(([name]) => name);
    const text = (scored ? `Scored against control unit ${scored[0]}.` : "Not scored: no canny unit.") + (others.length ? ` Not scored: ${others.join(", ")} (maps of other types are not edges).` : "");
    return el("p", { class: "muted", text });
  }

  function openDetail(item) {
    stopPlayer();
    if (dialog.hidden) returnFocus = document.activeElement;
    const index = review.shown().indexOf(item);
    const neighbour = (step) => {
      const other = index >= 0 ? review.shown()[index + step] : null;
      return el("a", { class: "button", href: other ? `#item=${encodeURIComponent(other.id)}` : null, "aria-disabled": other ? null : "true", text: step < 0 ? "← Previous" : "Next →" });
    };
    const output = fileOf(item, ".png");
    const figures = imageKinds(item).map(([kind, label]) => {
      const src = kind === "output" && output && item.status === "done" ? output : asset(item, kind);
      if (!src) return el("figure", { class: "missing" }, el("div", { class: "placeholder", text: `no ${label}` }), el("figcaption", { text: label }));
      const size = src === output ? item.size : item.assets[kind];
      return el("figure", {}, el("img", { src, alt: `${label} of ${item.id}`, class: `large large-${kind} ${scaledClass(size)}` }), el("figcaption", { text: src === output ? `${label} (${output})` : label }));
    });
    const infotext = el("pre", { class: "infotext", "data-infotext": item.id, text: item.status === "done" ? "loading…" : "(no output)" });
    dialog.replaceChildren(
      el(
        "div",
        { class: "detail-panel" },
        el(
          "div",
          { class: "detail-bar" },
          el("h2", { id: "detail-title", tabindex: "-1" }, item.id, " ", statusBadge(item.status)),
          el("div", { class: "detail-nav" }, neighbour(-1), neighbour(1), el("button", { type: "button", class: "close", onclick: closeDetail, text: "Close (Esc)" })),
        ),
        item.error ? el("p", { class: "error", text: item.error }) : null,
        (item.warnings || []).map((warning) => el("p", { class: "warning", text: warning })),
        item.assets || output ? el("div", { class: "large-images" }, figures) : el("p", { class: "muted", text: `No images: ${item.status === "pending" ? "not generated yet" : "the item failed before any was made"}.` }),
        denoising(item),
        el(
          "div",
          { class: "detail-columns" },
          el("section", {}, el("h3", { text: "Parameters" }), parameterTable(item)),
          el(
            "section",
            {},
            item.scores ? [el("h3", { text: "Control adherence" }), scoreTable(item)] : null,
            unitsScored(item),
            el("h3", { text: "Files" }),
            item.files ? el("ul", { class: "file-list" }, item.files.map(([name, size]) => el("li", {}, el("a", { href: name, text: name }), size ? ` (${bytes(size)})` : ""))) : el("p", { class: "muted", text: "none" }),
            fileOf(item, ".rrd") ? [el("h3", { text: "Open in the viewer" }), el("code", { class: "command", text: `rr-controlnet view ${shellWord(folderPath("OUT"))} ${shellWord(item.id)}` })] : null,
            el("h3", { text: "PNG infotext" }),
            infotext,
          ),
        ),
      ),
    );
    if (item.status === "done") {
      const info = infos.get(item.id);
      if (info) infotext.textContent = info.infotext || "(the PNG has no parameters text)";
      else loadInfo(item);
    }
    dialog.hidden = false;
    main.inert = true;
    document.body.classList.add("has-detail");
    dialog.scrollTop = 0;
    document.getElementById("detail-title").focus();
  }

  function denoising(item) {
    const src = asset(item, "steps");
    if (!src || !item.steps) return null;
    const [width, height] = item.assets.steps;
    const frames = item.steps.length;
    const scale = Math.max(1, Math.floor(192 / height));
    const strip = el("img", { src, alt: `step previews of ${item.id}, steps ${item.steps.join(", ")}`, class: "strip", style: `width:${width * frames * scale}px;height:${height * scale}px` });
    const caption = el("span", { class: "step-label", "aria-live": "off" });
    const slider = el("input", { type: "range", min: 0, max: frames - 1, value: frames - 1, "aria-label": `denoising step of ${item.id}` });
    const total = params(item).steps;
    function show(frame) {
      strip.style.transform = `translateX(${-frame * width * scale}px)`;
      slider.value = String(frame);
      caption.textContent = `step ${item.steps[frame] + 1} of ${total || item.steps[frames - 1] + 1}`;
    }
    const play = el("button", { type: "button", class: "play", text: "Play" });
    play.addEventListener("click", () => {
      if (player) return stopPlayer();
      let frame = Number(slider.value) >= frames - 1 ? 0 : Number(slider.value);
      play.textContent = "Pause";
      player = { button: play, timer: setInterval(() => { show(frame); frame = (frame + 1) % frames; }, 350) };
    });
    slider.addEventListener("input", () => { stopPlayer(); show(Number(slider.value)); });
    show(frames - 1);
    const filmstrip = el("img", { src, alt: `filmstrip of ${item.id}: ${frames} step previews side by side`, class: "filmstrip", style: `height:${Math.min(96, height * scale)}px` });
    return el(
      "section",
      { class: "denoising", "aria-label": "denoising" },
      el("h3", { text: `Denoising (${frames} of ${total || frames} steps, the x0 estimate at each)` }),
      el("div", { class: "player" }, el("div", { class: "frame-window", style: `width:${width * scale}px;height:${height * scale}px` }, strip), el("div", { class: "player-controls" }, play, slider, caption)),
      el("div", { class: "filmstrip-holder" }, filmstrip),
    );
  }

  function stopPlayer() {
    if (!player) return;
    clearInterval(player.timer);
    player.button.textContent = "Play";
    player = null;
  }

  function parameterTable(item) {
    const values = params(item);
    const rows = Object.entries(values).map(([key, value]) => [key, valueText(value)]);
    if (item.size) rows.push(["size generated", item.size.join(" × ")]);
    if (item.sweep) rows.push(["sweep of", data.sweeps[item.sweep[0]].source]);
    if (item.hash) rows.push(["params hash", item.hash]);
    if (item.seconds !== undefined) rows.push(["seconds", number(item.seconds, 3)]);
    const model = data.model || {};
    for (const [key, value] of Object.entries(model)) if (value !== null) rows.push([`model.${key}`, valueText(value)]);
    return el("table", { class: "kv" }, el("tbody", {}, rows.map(([key, value]) => el("tr", {}, el("th", { scope: "row", text: key }), el("td", { text: value })))));
  }

  function scoreTable(item) {
    const names = window.RR_REVIEW.score_names;
    const [f1, f1t, precision, recall, ssim] = ["f1", "f1_tolerant", "precision", "recall", "ssim"].map((name) => item.scores[names.indexOf(name)]);
    const rows = [
      ["F1 (pixel-exact)", percent(f1)],
      ["F1 (within 0.75% of the diagonal)", percent(f1t)],
      ["precision (output edges on control edges)", percent(precision)],
      ["recall (control edges the output follows)", percent(recall)],
      ["SSIM of the edge maps", number(ssim, 3)],
    ];
    return el("table", { class: "kv" }, el("tbody", {}, rows.map(([key, value]) => el("tr", {}, el("th", { scope: "row", text: key }), el("td", { text: value })))));
  }

  function closeDetail() {
    if (location.hash.startsWith("#item=")) history.pushState(null, "", location.pathname + location.search);
    hideDetail();
  }

  function hideDetail() {
    if (dialog.hidden) return;
    stopPlayer();
    dialog.hidden = true;
    main.inert = false;
    document.body.classList.remove("has-detail");
    if (returnFocus && document.contains(returnFocus)) returnFocus.focus();
  }

  function route() {
    const match = location.hash.match(/^#item=(.+)$/);
    const item = match ? byId.get(decodeURIComponent(match[1])) : null;
    if (item) openDetail(item);
    else hideDetail();
  }

  document.addEventListener("keydown", (event) => {
    if (dialog.hidden) return;
    if (event.key === "Escape") closeDetail();
    const typing = /^(INPUT|SELECT|TEXTAREA)$/.test(event.target.tagName);
    if (!typing && (event.key === "ArrowLeft" || event.key === "ArrowRight")) {
      const link = dialog.querySelectorAll(".detail-nav a")[event.key === "ArrowLeft" ? 0 : 1];
      if (link && link.getAttribute("href")) location.hash = link.getAttribute("href");
    }
  });
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) closeDetail();
  });
  window.addEventListener("hashchange", route);

  return { dialog, route };
};
