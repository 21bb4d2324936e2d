// waveform.js - a live scrolling waveform of one stem on a canvas: the
// newest audio at the right edge, one column per few render quanta, each
// column the peak of the stem before its gain (so a muted stem still shows
// what it carries, drawn dimmed).
//
// Design: a ring of column peaks; drawing happens once per animation frame
// and only when something changed. The canvas follows its CSS size.

const QUANTA_PER_COLUMN = 3;
const HISTORY = 4096;

export class Waveform {
  constructor(canvas) {
    this.canvas = canvas;
    this.g = canvas.getContext('2d');
    this.hist = new Float32Array(HISTORY);
    this.head = 0;
    this.acc = 0;
    this.accN = 0;
    this.dirty = true;
    this.dim = false;
    this.color = getComputedStyle(canvas).color || '#8cf';
    this.resize();
    if (typeof ResizeObserver !== 'undefined')
      new ResizeObserver(() => this.resize()).observe(canvas);
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(this.canvas.clientWidth * dpr));
    const h = Math.max(1, Math.round(this.canvas.clientHeight * dpr));
    if (w !== this.canvas.width || h !== this.canvas.height) {
      this.canvas.width = w;
      this.canvas.height = h;
      this.dirty = true;
    }
    this.color = getComputedStyle(this.canvas).color || this.color;
  }

  push(cols, offset, count) {
    for (let i = 0; i < count; i++) {
      const v = cols[offset + i];
      if (v > this.acc) this.acc = v;
      if (++this.accN === QUANTA_PER_COLUMN) {
        this.hist[this.head] = this.acc;
        this.head = (this.head + 1) % HISTORY;
        this.acc = 0;
        this.accN = 0;
        this.dirty = true;
      }
    }
  }

  clear() {
    this.hist.fill(0);
    this.dirty = true;
  }

  setDim(dim) {
    if (dim !== this.dim) {
      this.dim = dim;
      this.dirty = true;
    }
  }

  draw() {
    if (!this.dirty) return;
    this.dirty = false;
    const { width: w, height: h } = this.canvas;
    const g = this.g;
    g.clearRect(0, 0, w, h);
    g.globalAlpha = this.dim ? 0.3 : 1;
    g.fillStyle = this.color;
    const mid = h / 2;
    const n = Math.min(w, HISTORY);
    for (let x = 0; x < n; x++) {
      const v = this.hist[(this.head - n + x + HISTORY) % HISTORY];
      const a = Math.min(1, Math.sqrt(v)) * (mid - 1); // sqrt: quiet stems stay visible
      if (a > 0.25) g.fillRect(w - n + x, mid - a, 1, 2 * a);
    }
    g.globalAlpha = 0.35;
    g.fillRect(0, Math.floor(mid), w, 1);
    g.globalAlpha = 1;
  }
}
