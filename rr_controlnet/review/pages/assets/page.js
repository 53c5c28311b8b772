/* What the batch page (review.js) and the comparison page (compare.js) share: building elements,
   formatting numbers, paging a list, and where the page lives on disk.
   Plain JavaScript, no build step: the package ships this file as it is. */
"use strict";

window.RRPage = (function () {
  /** An element: attrs sets properties ("class", "text", "on<event>", "data-*", aria and the rest as
      attributes); children are nodes or strings; null and false children are skipped. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "hidden") node.hidden = Boolean(value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    append(node, ...children);
    return node;
  }

  function append(node, ...children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /** An SVG element (charts), attributes only. */
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    for (const child of children.flat()) {
      if (child) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const percent = (value) => (typeof value === "number" ? (100 * value).toFixed(1) + "%" : "–");
  const number = (value, digits) => (typeof value === "number" ? value.toFixed(digits) : "–");

  function seconds(value) {
    if (typeof value !== "number") return "–";
    if (value < 60) return value.toFixed(value < 10 ? 2 : 1) + " s";
    const minutes = Math.floor(value / 60);
    if (minutes < 60) return `${minutes} min ${Math.round(value % 60)} s`;
    return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  }

  function bytes(value) {
    if (typeof value !== "number") return "";
    if (value < 1024) return `${value} B`;
    if (value < 1024 * 1024) return `${(value / 1024).toFixed(1)} kB`;
    return `${(value / 1024 / 1024).toFixed(1)} MB`;
  }

  /** A value as a person writes it in a manifest. */
  function valueText(value) {
    if (value === null || value === undefined) return "auto";
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  /** The folder this page is in, as a local path when opened from a file (for commands to copy). */
  function folderPath(fallback) {
    if (location.protocol !== "file:") return fallback;
    let path = decodeURIComponent(location.pathname.replace(/\/[^/]*$/, ""));
    if (/^\/[A-Za-z]:/.test(path)) path = path.slice(1).replace(/\//g, "\\"); // file:///C:/... on Windows
    return path || fallback;
  }

  /** A word for a shell command line: quoted when it holds anything but plain characters. */
  function shellWord(text) {
    return /^[A-Za-z0-9_./:=@%+-]+$/.test(text) ? text : "'" + text.replace(/'/g, "'\\''") + "'";
  }

  /** Paging controls: "items a-b of n", previous and next, the page size. onChange(page, size). */
  function pager(total, page, size, sizes, onChange, label) {
    const pages = Math.max(1, Math.ceil(total / size));
    const first = total ? page * size + 1 : 0;
    const last = Math.min(total, (page + 1) * size);
    const sizeSelect = el(
      "select",
      { "aria-label": `${label} per page`, onchange: (event) => onChange(0, Number(event.target.value)) },
      sizes.map((option) => el("option", { value: option, selected: option === size, text: String(option) })),
    );
    return el(
      "nav",
      { class: "pager", "aria-label": `${label} pages` },
      el("button", { type: "button", disabled: page === 0, onclick: () => onChange(page - 1, size), text: "← Previous" }),
      el("span", { class: "pager-position", "aria-live": "polite", text: `${first}–${last} of ${total} (page ${page + 1} of ${pages})` }),
      el("button", { type: "button", disabled: page >= pages - 1, onclick: () => onChange(page + 1, size), text: "Next →" }),
      el("label", { class: "pager-size" }, sizeSelect, ` ${label} per page`),
    );
  }

  /** The search box and status filter above a list, and the count of what they match: onQuery(text) as the
      search changes, onStatus(status) as the filter does ("all" or one of statuses). */
  function listControls(statuses, searchLabel, onQuery, onStatus, matchCount) {
    const searchBox = el("input", {
      type: "search",
      placeholder: `Search ${searchLabel}`,
      "aria-label": `Search items by ${searchLabel}`,
      oninput: (event) => onQuery(event.target.value.trim().toLowerCase()),
    });
    const statusSelect = el(
      "select",
      { id: "status-filter", "aria-label": "Show items with status", onchange: (event) => onStatus(event.target.value) },
      ["all", ...statuses].map((status) => el("option", { value: status, text: status === "all" ? "all statuses" : status })),
    );
    return el("div", { class: "controls" }, searchBox, el("label", {}, "Status ", statusSelect), matchCount);
  }

  /** Images much smaller than they are shown (the tiny models' 64-pixel outputs) are drawn as pixels, not blurred. */
  function scaledClass(size) {
    return size && Math.max(size[0], size[1]) < 160 ? "pixelated" : "";
  }

  return {
    el, append, svg, percent, number, seconds, bytes, valueText, folderPath, shellWord, pager, listControls, scaledClass,
  };
})();
