/* "Open in Rerun" beside every item of the batch page (its <id>.rrd) and of the comparison page
   (compare.rrd, a tab per item): served by `rr-controlnet review OUT --serve`, a link to the web viewer
   rerun-sdk ships (VIEWER, on the same server) with the recording's URL; opened from a file, it says how
   to serve the folder. Each carries data-open-viewer (the item's id). Items are decorated as the page
   draws them (paging, filtering), so this script knows nothing of how either page lays them out. */
"use strict";

(function () {
  const { el, folderPath, shellWord } = window.RRPage;
  const VIEWER = "/rerun-viewer/";
  const served = location.protocol === "http:" || location.protocol === "https:";
  const comparison = Boolean(window.RR_COMPARE);

  function recording(itemId) {
    return new URL(comparison ? "compare.rrd" : `${encodeURIComponent(itemId)}.rrd`, location.href).href;
  }

  /** The folder `review --serve` serves: the batch's (a comparison inside the new run is served with it). */
  function servedFolder() {
    const here = folderPath(".");
    if (!comparison || !window.RR_COMPARE.batch_page) return here;
    return here.replace(/[\\/][^\\/]+$/, "") || here;
  }

  function link(itemId) {
    if (served) {
      const href = `${location.origin}${VIEWER}?url=${encodeURIComponent(recording(itemId))}`;
      return el("a", { class: "open-viewer small", href, "data-open-viewer": itemId, text: "Open in Rerun" });
    }
    const command = `rr-controlnet review ${shellWord(servedFolder())} --serve`;
    return el("span", {
      class: "open-viewer small muted",
      "data-open-viewer": itemId,
      title: `Served over HTTP, this opens the recording in the web viewer: ${command}`,
      text: `Open in Rerun: serve with ${command}`,
    });
  }

  function decorate(root) {
    for (const item of root.querySelectorAll("[data-item-id]")) {
      if (item.querySelector(":scope [data-open-viewer]")) continue;
      if (!comparison && item.dataset.status !== "done") continue; // no recording to open
      const place = item.tagName === "TR" ? item.cells[0] : item.querySelector("h2") || item;
      if (place) place.append(" ", link(item.dataset.itemId));
    }
  }

  const app = document.getElementById("app");
  new MutationObserver(() => decorate(app)).observe(app, { childList: true, subtree: true });
  decorate(app);
})();
