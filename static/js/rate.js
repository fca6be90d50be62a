/* The rating page: shows the reader's next item, takes "Real" / "AI-generated" and a confidence,
   saves each answer the moment it is given, and moves on.

   Everything comes from the reader API (GET next, POST responses); each answer is posted with
   include_next, so the server answers with the next item as well: one request per answer (GET next
   only on load, and after a practice item's feedback). The page knows an item only by
   its unguessable token. Each answer gets a client_id (a UUID) once, and every retry resends the
   same body, so that a retry can never make a second answer. Built for hour-long sessions: one
   <img> and one preloading Image object are reused, listeners are attached once, nothing grows. */
(function () {
  "use strict";

  const cfg = JSON.parse(document.getElementById("rate-config").textContent);
  const csrfToken = document.querySelector("input[name=csrfmiddlewaretoken]").value;
  const $ = (id) => document.getElementById(id);
  const img = $("patch");
  const viewport = $("viewport");
  const submitBtn = $("submit");
  const backBtn = $("back");
  const statusEl = $("status");
  const feedbackEl = $("feedback");
  const answerBtns = Array.from(document.querySelectorAll("button.answer"));
  const levelBtns = Array.from(document.querySelectorAll("button.level"));
  const preloader = new Image(); // the next item's image, fetched ahead into the browser cache

  let mode = "loading"; // loading | rating | saving | feedback | stopped
  let current = null; // the item shown: {item, image_url, position, total, practice}
  let choice = { answer: null, confidence: null };
  let pendingBody = null; // the answer being saved, with its client_id, kept across retries
  let previous = null; // the last answered item (for revision, where the study allows it)
  let revising = false;

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function uuid4() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
    const b = window.crypto.getRandomValues(new Uint8Array(16)); // not a secure context: same format by hand
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  function setStatus(text, isError) {
    statusEl.textContent = text || "";
    statusEl.classList.toggle("error", !!isError);
  }

  /* fetch with retries for network failures and server errors (5xx); 4xx answers are returned. */
  async function api(url, options, retries) {
    const maxRetries = retries === undefined ? 6 : retries;
    for (let attempt = 0; ; attempt++) {
      let resp;
      try {
        resp = await fetch(url, Object.assign({ credentials: "same-origin", cache: "no-store" }, options));
      } catch (err) {
        if (attempt >= maxRetries) throw err;
        setStatus(`Connection problem, retrying (${attempt + 1}/${maxRetries})…`, true);
        await sleep(Math.min(500 * 2 ** attempt, 8000));
        continue;
      }
      if (resp.status >= 500 && attempt < maxRetries) {
        setStatus(`Server busy, retrying (${attempt + 1}/${maxRetries})…`, true);
        await sleep(Math.min(500 * 2 ** attempt, 8000));
        continue;
      }
      let body = null;
      try {
        body = await resp.json();
      } catch (err) {
        body = null;
      }
      return { status: resp.status, body: body };
    }
  }

  function render() {
    const complete = choice.answer !== null && choice.confidence !== null;
    for (const b of answerBtns) b.setAttribute("aria-pressed", String(b.dataset.answer === choice.answer));
    for (const b of levelBtns) b.setAttribute("aria-pressed", String(Number(b.dataset.confidence) === choice.confidence));
    const inputs = mode === "rating";
    for (const b of answerBtns.concat(levelBtns)) b.disabled = !inputs;
    submitBtn.disabled = !(inputs && complete);
    if (backBtn) backBtn.hidden = !(cfg.allow_revision && previous && !revising && mode === "rating");
  }

  function showProgress(item) {
    $("phase").textContent = item.practice ? "Practice" : revising ? "Changing previous answer" : "Image";
    $("progress-text").textContent = `${item.position} / ${item.total}`;
    const bar = $("progress-bar");
    bar.max = item.total;
    bar.value = item.position - 1;
  }

  function show(item, preset) {
    current = item;
    choice = preset ? { answer: preset.answer, confidence: preset.confidence } : { answer: null, confidence: null };
    pendingBody = null;
    feedbackEl.hidden = true;
    showProgress(item);
    resetView();
    if (img.getAttribute("src") !== item.image_url) {
      img.classList.remove("ready"); // shown again by the load event
      img.src = item.image_url;
    }
    if (item.preload_url) preloader.src = item.preload_url;
    mode = "rating";
    setStatus("");
    render();
    viewport.focus({ preventScroll: true });
  }

  /* A next-item body (from GET next, or `next` in an answer's response): show it, or finish. */
  function showNext(body) {
    if (body.done) {
      mode = "stopped";
      window.location.assign(cfg.finish_url);
      return;
    }
    show(body);
  }

  async function loadNext() {
    mode = "loading";
    revising = false;
    render();
    let res;
    try {
      res = await api(cfg.next_url, { method: "GET", headers: { Accept: "application/json" } });
    } catch (err) {
      mode = "stopped";
      setStatus("Cannot reach the server. Your answers so far are saved; reload the page to continue.", true);
      return;
    }
    if (res.status === 200 && res.body) return showNext(res.body);
    mode = "stopped";
    render();
    if (res.status === 403) setStatus("Your session has ended: log in again to continue (your answers are saved).", true);
    else setStatus((res.body && res.body.detail) || `Unexpected answer from the server (${res.status}).`, true);
  }

  async function submit() {
    if (mode !== "rating" || choice.answer === null || choice.confidence === null) return;
    mode = "saving";
    render();
    setStatus("Saving…");
    // One client_id per answer: a retry of this very answer resends it unchanged.
    if (!pendingBody || pendingBody.answer !== choice.answer || pendingBody.confidence !== choice.confidence) {
      pendingBody = {
        item: current.item,
        answer: choice.answer,
        confidence: choice.confidence,
        client_id: uuid4(),
        include_next: true,
      };
    }
    let res;
    try {
      res = await api(cfg.responses_url, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken },
        body: JSON.stringify(pendingBody),
      });
    } catch (err) {
      mode = "rating";
      render();
      setStatus("Could not save this answer (no connection). Press Enter to try again; nothing is lost.", true);
      return;
    }
    if (res.status === 200 || res.status === 201) {
      // Practice answers are not revised: their right answer has just been shown.
      previous = current.practice ? null : Object.assign({}, current, { answer: choice.answer, confidence: choice.confidence });
      pendingBody = null;
      if (res.body && res.body.feedback) return showFeedback(res.body.feedback);
      if (res.body && res.body.next) return showNext(res.body.next);
      return loadNext(); // no next item in the answer (the study was closed meanwhile): ask
    }
    if (res.status === 409 && res.body && res.body.code === "already_answered") {
      setStatus("This image was answered already (in another tab?); moving on.");
      return loadNext();
    }
    if (res.status === 403) {
      mode = "stopped";
      render();
      setStatus("Your session has ended: log in again to continue (saved answers are kept).", true);
      return;
    }
    mode = res.status === 409 ? "stopped" : "rating";
    render();
    setStatus((res.body && res.body.detail) || `The answer was refused (${res.status}).`, true);
  }

  function showFeedback(feedback) {
    mode = "feedback";
    render();
    setStatus("");
    const truth = feedback.truth === "real" ? "real" : "AI-generated";
    $("feedback-text").textContent = feedback.correct
      ? `Correct: this practice image is ${truth}.`
      : `Not quite: this practice image is ${truth}.`;
    feedbackEl.classList.toggle("correct", !!feedback.correct);
    feedbackEl.hidden = false;
    $("feedback-next").focus({ preventScroll: true });
  }

  function startRevision() {
    if (!cfg.allow_revision || !previous || mode !== "rating") return;
    revising = true;
    show(previous, previous);
  }

  /* Zoom and pan: the image is fitted to the viewport, then scaled by `zoom` around a point. */
  let fit = 1;
  let zoom = 1;
  let tx = 0;
  let ty = 0;
  let drag = null;

  function applyTransform() {
    img.style.transform = `translate(${tx}px, ${ty}px) scale(${fit * zoom})`;
  }

  function resetView() {
    zoom = 1;
    const w = img.naturalWidth || 128;
    const h = img.naturalHeight || 128;
    const vw = viewport.clientWidth;
    const vh = viewport.clientHeight;
    fit = Math.max(1e-3, Math.min(vw / w, vh / h));
    // Whole-number scale factors keep every source pixel the same size on screen.
    if (fit >= 1) fit = Math.floor(fit);
    tx = (vw - w * fit) / 2;
    ty = (vh - h * fit) / 2;
    applyTransform();
  }

  function zoomAt(factor, cx, cy) {
    const next = Math.min(16, Math.max(1, zoom * factor));
    const k = next / zoom;
    tx = cx - (cx - tx) * k;
    ty = cy - (cy - ty) * k;
    zoom = next;
    if (zoom === 1) return resetView();
    applyTransform();
  }

  img.addEventListener("load", () => {
    resetView();
    img.classList.add("ready");
  });
  img.addEventListener("error", () => {
    if (current) setStatus("The image could not be loaded; reload the page (your answers are saved).", true);
  });
  viewport.addEventListener(
    "wheel",
    (ev) => {
      ev.preventDefault();
      const r = viewport.getBoundingClientRect();
      zoomAt(ev.deltaY < 0 ? 1.25 : 0.8, ev.clientX - r.left, ev.clientY - r.top);
    },
    { passive: false },
  );
  viewport.addEventListener("pointerdown", (ev) => {
    drag = { x: ev.clientX - tx, y: ev.clientY - ty };
    viewport.setPointerCapture(ev.pointerId);
    viewport.classList.add("dragging");
  });
  viewport.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    tx = ev.clientX - drag.x;
    ty = ev.clientY - drag.y;
    applyTransform();
  });
  const endDrag = () => {
    drag = null;
    viewport.classList.remove("dragging");
  };
  viewport.addEventListener("pointerup", endDrag);
  viewport.addEventListener("pointercancel", endDrag);
  window.addEventListener("resize", () => (zoom === 1 ? resetView() : applyTransform()));

  for (const b of answerBtns) b.addEventListener("click", () => pick("answer", b.dataset.answer));
  for (const b of levelBtns) b.addEventListener("click", () => pick("confidence", Number(b.dataset.confidence)));
  submitBtn.addEventListener("click", submit);
  if (backBtn) backBtn.addEventListener("click", startRevision);
  $("feedback-next").addEventListener("click", () => mode === "feedback" && loadNext());

  function pick(what, value) {
    if (mode !== "rating") return;
    choice[what] = value;
    render();
  }

  const levelByKey = new Map(levelBtns.filter((b) => b.dataset.key).map((b) => [b.dataset.key, Number(b.dataset.confidence)]));

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
    if (ev.target instanceof HTMLAnchorElement) return; // Enter on a focused link follows it
    const key = ev.key;
    if (key === "Enter") {
      ev.preventDefault();
      if (mode === "feedback") loadNext();
      else submit();
      return;
    }
    if (key === "r" || key === "R") pick("answer", "real");
    else if (key === "a" || key === "A") pick("answer", "synthetic");
    else if (levelByKey.has(key)) pick("confidence", levelByKey.get(key));
    else if (key === "+" || key === "=") zoomAt(1.25, viewport.clientWidth / 2, viewport.clientHeight / 2);
    else if (key === "-") zoomAt(0.8, viewport.clientWidth / 2, viewport.clientHeight / 2);
    else if (key === "0") resetView();
    else if (key === "b" || key === "B") startRevision();
    else return;
    ev.preventDefault();
  });

  loadNext();
})();
