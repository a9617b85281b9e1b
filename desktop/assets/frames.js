// Runs before gradio's own modules (desktop/early_script.py puts it at the top of the page's
// <head>), so gradio's status tracker takes this requestAnimationFrame when its module loads.
//
// Why: gradio 6.31's status tracker (js/statustracker/static/index.svelte) counts the seconds
// of a pending event on every animation frame, re-arming the frame from inside it for as long
// as its own flag says so, and nothing clears that flag when the tracker is destroyed. The
// page's loading screen is such a tracker, destroyed while still "pending" once the app has
// mounted: from then on every open page asked for 60 frames a second forever, keeping the
// renderer and the window's compositor awake at rest (bench/desktop_truth.py --parts idle).
//
// What: a frame that a status tracker re-arms from inside its own frame is not granted while no
// tracker on the page is pending. A pending tracker always shows its progress text, so a live
// one keeps its counter; every other frame (first frames, scrolling, animations) is untouched.
(() => {
  const request = window.requestAnimationFrame;
  const PENDING = '[data-testid="status-tracker"] .progress-text';
  const TRACKER = /\/statustracker-[^/]*\.js/;
  let inFrame = 0;
  window.requestAnimationFrame = function requestAnimationFrame(callback) {
    if (inFrame && !document.querySelector(PENDING) && TRACKER.test(new Error().stack || "")) {
      return 0;  // an orphaned tracker's counter: let it end here
    }
    return request.call(window, (time) => {
      inFrame++;
      try {
        callback(time);
      } finally {
        inFrame--;
      }
    });
  };
})();
