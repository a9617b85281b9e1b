// Loupe's page fix-ups for screen readers and the keyboard, applied to gradio's own markup
// whenever it (re)renders. Each fixes one thing gradio 6 renders out of a screen reader's reach.
(() => {
  const NAME = "Caption (alt text)";
  const fix = () => {
    // The caption is output, not input: read-only (Tab reaches it, text can be selected and
    // copied), never disabled (disabled controls are skipped by Tab and by screen readers).
    document.querySelectorAll("#loupe-caption textarea").forEach((box) => {
      if (box.disabled) box.disabled = false;
      if (!box.readOnly) box.readOnly = true;
      // its <label> begins with the Copy button, which leaves the name empty
      if (box.getAttribute("aria-label") !== NAME) box.setAttribute("aria-label", NAME);
    });
    // Example photos are image-only buttons: name each by its photo.
    document.querySelectorAll("button.gallery-item:not([aria-label])").forEach((button) => {
      const img = button.querySelector("img");
      if (!img || !img.src) return;
      const file = decodeURIComponent(img.src.split("/").pop() || "").replace(/\.[^.]+$/, "");
      button.setAttribute("aria-label", "Example photo: " + file);
    });
    // A shown image sits in a button of gradio's with no text (a photo panel's gr.Image):
    // name it by the picture's own alt text, else by its block's label.
    document.querySelectorAll(".image-container button:not([aria-label])").forEach((button) => {
      if ((button.innerText || "").trim()) return;
      const img = button.querySelector("img");
      const label = button.closest(".block")?.querySelector("label, [data-testid=block-label]");
      const name = (img && img.alt) || (label && label.innerText.trim()) || "Photo";
      button.setAttribute("aria-label", name);
    });
    // An empty output's placeholder carries a name but no role, which screen readers ignore.
    document.querySelectorAll(".empty[aria-label]:not([role])").forEach((el) => el.setAttribute("role", "img"));
    // The drop zone's name must contain the words it shows ("Drop Image Here - or - Click to Upload").
    document.querySelectorAll(".upload-container[aria-label]").forEach((el) => {
      const shown = (el.innerText || "").replace(/\s+/g, " ").trim();
      if (shown && el.getAttribute("aria-label") !== shown) el.setAttribute("aria-label", shown);
    });
    // A message's header (title and Close) is itself a button that folds the message: a control
    // inside a control, which screen readers cannot tell apart (axe "nested-interactive"). The
    // header stays clickable with the mouse; the keyboard gets Close, and the text stays shown.
    document.querySelectorAll(".toast-header[role=button]").forEach((el) => {
      el.removeAttribute("role");
      el.removeAttribute("tabindex");
    });
    // The working-state lines under Caption and Classify: read out when the answer arrives.
    document.querySelectorAll("#loupe-caption-status, #loupe-classify-status").forEach((el) => {
      if (el.getAttribute("aria-live") !== "polite") {
        el.setAttribute("role", "status");
        el.setAttribute("aria-live", "polite");
      }
    });
  };
  const start = () => {
    fix();
    new MutationObserver(fix).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                      attributeFilter: ["disabled", "aria-label"]});
  };
  if (document.body) start(); else document.addEventListener("DOMContentLoaded", start);
})();
