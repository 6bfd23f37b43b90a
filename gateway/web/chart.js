// A small time-series line chart on <canvas>: a few series, a rolling time window, nice y ticks,
// crisp on high-DPI screens, colours taken from CSS custom properties so it follows the theme.

export class LineChart {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {{series: {key: string, label: string, colorVar: string}[], windowMs: number, format: (v: number) => string}} options
   */
  constructor(canvas, { series, windowMs = 5 * 60 * 1000, format = formatTick }) {
    this.canvas = canvas;
    this.series = series;
    this.windowMs = windowMs;
    this.format = format;
    this.points = []; // {t, values: {key: number|null}}
    this.frame = 0;
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  add(t, values) {
    this.points.push({ t, values });
    const cutoff = t - this.windowMs * 1.2;
    while (this.points.length && this.points[0].t < cutoff) this.points.shift();
    this.draw();
  }

  draw() {
    cancelAnimationFrame(this.frame);
    this.frame = requestAnimationFrame(() => this.paint());
  }

  paint() {
    const { canvas } = this;
    const dpr = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(height * dpr)) {
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const style = getComputedStyle(canvas);
    const color = (name, fallback) => style.getPropertyValue(name).trim() || fallback;
    const ink = color("--muted", "#6b7280");
    const grid = color("--line", "#e5e7eb");
    ctx.font = `12px ${style.fontFamily || "system-ui"}`;

    const now = this.points.length ? this.points[this.points.length - 1].t : Date.now();
    // Until there is enough history, zoom in on what there is (at least a minute).
    const span = this.points.length ? now - this.points[0].t : 0;
    const windowMs = Math.min(this.windowMs, Math.max(60000, span));
    const t0 = now - windowMs;
    const visible = this.points.filter((p) => p.t >= t0);
    const values = visible.flatMap((p) => this.series.map((s) => p.values[s.key])).filter(isNum);
    const { max: yMax, step } = niceScale(values.length ? Math.max(...values) : 0);
    const pad = { left: 56, right: 14, top: 12, bottom: 24 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const x = (t) => pad.left + ((t - t0) / windowMs) * plotW;
    const y = (v) => pad.top + plotH - (v / yMax) * plotH;

    // grid and y labels
    ctx.strokeStyle = grid;
    ctx.fillStyle = ink;
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let v = 0; v <= yMax + step / 2; v += step) {
      const py = Math.round(y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(pad.left, py);
      ctx.lineTo(width - pad.right, py);
      ctx.stroke();
      ctx.fillText(this.format(v), pad.left - 6, py);
    }
    // x labels: time ago
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const tickMs = windowMs <= 120000 ? 15000 : 60000;
    const every = Math.max(1, Math.round(windowMs / tickMs / 5));
    for (let i = 0; i * tickMs <= windowMs + 1; i += every) {
      const ago = i * tickMs;
      const label = ago === 0 ? "now" : tickMs < 60000 ? `−${ago / 1000} s` : `−${ago / 60000} min`;
      const px = Math.max(pad.left + 12, Math.min(x(now - ago), width - pad.right - 12));
      ctx.fillText(label, px, height - pad.bottom + 6);
    }

    if (!visible.length) {
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText("Waiting for data…", pad.left + plotW / 2, pad.top + plotH / 2);
      return;
    }
    for (const s of this.series) this.line(ctx, visible, s, x, y, color(s.colorVar, "#2f6f62"));
  }

  line(ctx, points, series, x, y, stroke) {
    ctx.strokeStyle = stroke;
    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    ctx.beginPath();
    let drawing = false;
    for (const p of points) {
      const v = p.values[series.key];
      if (!isNum(v)) {
        drawing = false; // a gap where the field was missing
        continue;
      }
      if (drawing) ctx.lineTo(x(p.t), y(v));
      else ctx.moveTo(x(p.t), y(v));
      drawing = true;
    }
    ctx.stroke();
    const last = [...points].reverse().find((p) => isNum(p.values[series.key]));
    if (last) {
      ctx.fillStyle = stroke;
      ctx.beginPath();
      ctx.arc(x(last.t), y(last.values[series.key]), 3, 0, Math.PI * 2);
      ctx.fill();
    }
  }
}

function isNum(v) {
  return typeof v === "number" && Number.isFinite(v);
}

/** A y axis from 0 with 4-5 round steps (1/2/5 x 10^n) covering v; at least 0-10. */
export function niceScale(v) {
  const raw = Math.max(v, 10) / 4;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  return { max: step * Math.ceil(Math.max(v, 10) / step), step };
}

function formatTick(v) {
  if (v >= 1000) return `${(v / 1000).toFixed(v % 1000 ? 1 : 0)}k`;
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}
