// bench/chart.ts: small dependency-free SVG charts for the benchmark suites: line charts
// (numeric x, optional log scales, points that failed drawn as marked crosses, e.g. OOM)
// and grouped bar charts (categorical x), each with axes, tick labels, axis titles and a
// legend; several panels side by side in one self-contained SVG document. All text is
// XML-escaped; non-finite values are never drawn.

/** One point of a line series: y null (or non-finite) draws nothing unless `mark` is set. */
export interface ChartPoint {
  x: number | string;
  y: number | null;
  /** A label drawn at the top of the plot above x (e.g. 'OOM'), with a cross in the series colour. */
  mark?: string;
}

/** A named series of points. */
export interface ChartSeries {
  name: string;
  points: ChartPoint[];
  /** CSS colour (default: a fixed palette by position). */
  color?: string;
  /** Dashed line (line charts). */
  dashed?: boolean;
}

/** One chart panel. */
export interface ChartSpec {
  /** 'line': numeric x (sizes); 'bar': grouped bars, x categories in first-seen order. */
  kind: 'line' | 'bar';
  title: string;
  xLabel: string;
  yLabel: string;
  series: ChartSeries[];
  /** Log scale on x (line charts only); base 2 ticks by default ('log2'), or 'log10'. */
  xScale?: 'linear' | 'log2' | 'log10';
  /** Log10 scale on y (only positive values are drawn). */
  yLog?: boolean;
  /** Panel size in px (default 520 x 340). */
  width?: number;
  height?: number;
  /** Small print under the plot. */
  note?: string;
}

/** Options of {@link renderSvg}. */
export interface RenderOptions {
  /** Document title (a heading above the panels). */
  title?: string;
  /** Panels per row (default: all in one row). */
  columns?: number;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

/** XML-escapes text for element content and attribute values. */
export function escapeXml(s: string): string {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** Short number: 1.5k, 2M, 0.25, 3.1e-5. */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a === 0) return '0';
  const units: [number, string][] = [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
  for (const [u, s] of units) if (a >= u) return trim(v / u) + s;
  if (a >= 0.01) return trim(v);
  return v.toExponential(1);
}

/** Binary-size style labels for powers of two (1k = 1024, 64k, 1M = 2^20); others as formatNumber. */
function formatPow2(v: number): string {
  const l = Math.log2(v);
  if (Number.isInteger(l) && l >= 10) return l >= 20 ? `${2 ** (l - 20)}M` : `${2 ** (l - 10)}k`;
  return formatNumber(v);
}

function trim(v: number): string {
  const a = Math.abs(v);
  const s = a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

/** Splits text into lines of at most `width` characters at spaces (long words cut), at most 3 lines. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let cur = '';
  for (const w of text.split(/\s+/).filter(Boolean)) {
    if (!cur) cur = w;
    else if (cur.length + 1 + w.length <= width) cur += ' ' + w;
    else {
      lines.push(cur);
      cur = w;
    }
  }
  if (cur) lines.push(cur);
  if (lines.length > 3) return [...lines.slice(0, 2), lines.slice(2).join(' ').slice(0, Math.max(1, width - 1)) + '…'];
  return lines.length ? lines : [''];
}

const num = (v: number) => (Math.round(v * 100) / 100).toString();

interface Scale {
  map: (v: number) => number;
  ticks: number[];
  label: (v: number) => string;
}

function niceStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

function linearScale(lo: number, hi: number, a: number, b: number, zero: boolean): Scale {
  if (zero) lo = Math.min(0, lo);
  if (hi === lo) hi = lo + (lo === 0 ? 1 : Math.abs(lo));
  const step = niceStep(hi - lo, 5);
  const t0 = Math.floor(lo / step) * step, t1 = Math.ceil(hi / step) * step;
  const ticks: number[] = [];
  for (let t = t0; t <= t1 + step / 2; t += step) ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  return { map: (v) => a + ((v - t0) / (t1 - t0)) * (b - a), ticks, label: formatNumber };
}

function logScale(lo: number, hi: number, a: number, b: number, base: 2 | 10): Scale {
  const lg = (v: number) => Math.log(v) / Math.log(base);
  let e0 = Math.floor(lg(lo) + 1e-9), e1 = Math.ceil(lg(hi) - 1e-9);
  if (e1 === e0) e1 = e0 + 1;
  const stride = Math.max(1, Math.ceil((e1 - e0) / 8));
  const ticks: number[] = [];
  for (let e = e0; e <= e1; e += stride) ticks.push(base ** e);
  e1 = Math.max(e1, lg(ticks[ticks.length - 1]));
  e0 = Math.min(e0, lg(ticks[0]));
  return { map: (v) => a + ((lg(v) - e0) / (e1 - e0)) * (b - a), ticks, label: base === 2 ? formatPow2 : formatNumber };
}

const finite = (v: number | null | undefined): v is number => typeof v === 'number' && Number.isFinite(v);

/** Renders one panel as a <g> translated to (ox, oy). */
function panel(spec: ChartSpec, ox: number, oy: number): string {
  const W = spec.width ?? 520, H = spec.height ?? 340;
  // The legend column fits the longest series name (about 6.3 px a character at 11 px).
  const legendW = Math.min(280, Math.max(110, 36 + 6.3 * Math.max(0, ...spec.series.map((x) => x.name.length))));
  const L = 64, R = W - legendW - 10, T = 34;
  // Bar charts: category labels wrapped to their slot (up to 3 lines), the plot shrinks to fit.
  const cats: string[] = [];
  if (spec.kind === 'bar') for (const s of spec.series) for (const p of s.points) if (!cats.includes(String(p.x))) cats.push(String(p.x));
  const slot = (R - L) / Math.max(1, cats.length);
  const catLines = cats.map((c) => wrap(c, Math.max(4, Math.floor(slot / 6.3))));
  const extra = 13 * (Math.max(1, ...catLines.map((l) => l.length)) - 1);
  const B = H - (spec.note ? 62 : 48) - extra;
  const out: string[] = [`<g transform="translate(${ox},${oy})">`];
  out.push(`<text x="${W / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">${escapeXml(spec.title)}</text>`);
  const ys = spec.series.flatMap((s) => s.points.map((p) => p.y)).filter(finite).filter((v) => !spec.yLog || v > 0);
  const yLo = ys.length ? Math.min(...ys) : spec.yLog ? 1 : 0, yHi = ys.length ? Math.max(...ys) : spec.yLog ? 10 : 1;
  const ysc = spec.yLog ? logScale(yLo, yHi, B, T, 10) : linearScale(yLo, yHi, B, T, true);
  // y grid and ticks
  for (const t of ysc.ticks) {
    const y = num(ysc.map(t));
    out.push(`<line x1="${L}" x2="${R}" y1="${y}" y2="${y}" stroke="#e3e3e3"/>`);
    out.push(`<text x="${L - 6}" y="${y}" dy="0.32em" text-anchor="end" font-size="11">${escapeXml(ysc.label(t))}</text>`);
  }
  const color = (s: ChartSeries, i: number) => s.color ?? PALETTE[i % PALETTE.length];
  if (spec.kind === 'line') {
    const xs = spec.series.flatMap((s) => s.points.map((p) => Number(p.x))).filter((v) => Number.isFinite(v) && (spec.xScale === undefined || spec.xScale === 'linear' || v > 0));
    const xLo = xs.length ? Math.min(...xs) : 1, xHi = xs.length ? Math.max(...xs) : 2;
    const pad = 12;
    const xsc = spec.xScale === 'log2' || spec.xScale === 'log10'
      ? logScale(xLo, xHi, L + pad, R - pad, spec.xScale === 'log2' ? 2 : 10)
      : linearScale(xLo, xHi, L + pad, R - pad, false);
    for (const t of xsc.ticks) {
      const x = num(xsc.map(t));
      out.push(`<line x1="${x}" x2="${x}" y1="${T}" y2="${B}" stroke="#f0f0f0"/>`);
      out.push(`<text x="${x}" y="${B + 16}" text-anchor="middle" font-size="11">${escapeXml(xsc.label(t))}</text>`);
    }
    spec.series.forEach((s, i) => {
      const c = color(s, i);
      const pts = s.points.filter((p) => finite(p.y) && Number.isFinite(Number(p.x)) && (!spec.yLog || (p.y as number) > 0));
      if (pts.length > 1) {
        const d = pts.map((p, k) => `${k ? 'L' : 'M'}${num(xsc.map(Number(p.x)))},${num(ysc.map(p.y as number))}`).join(' ');
        out.push(`<path d="${d}" fill="none" stroke="${escapeXml(c)}" stroke-width="2"${s.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
      }
      for (const p of pts)
        out.push(`<circle cx="${num(xsc.map(Number(p.x)))}" cy="${num(ysc.map(p.y as number))}" r="3.5" fill="${escapeXml(c)}"><title>${escapeXml(`${s.name}: ${formatNumber(Number(p.x))} -> ${formatNumber(p.y as number)}`)}</title></circle>`);
      s.points.forEach((p, k) => {
        if (!p.mark || !Number.isFinite(Number(p.x))) return;
        const x = xsc.map(Number(p.x)), y = T + 10 + 12 * i;
        out.push(`<path d="M${num(x - 4)},${num(y - 4)} L${num(x + 4)},${num(y + 4)} M${num(x - 4)},${num(y + 4)} L${num(x + 4)},${num(y - 4)}" stroke="${escapeXml(c)}" stroke-width="2"/>`);
        // A run of equal marks is labelled once, at its first point.
        if (k > 0 && s.points[k - 1].mark === p.mark) return;
        const left = x > R - 8 - 6.5 * p.mark.length; // near the right edge: the label goes left of the cross
        out.push(`<text x="${num(left ? x - 7 : x + 7)}" y="${num(y)}" dy="0.32em" font-size="10" text-anchor="${left ? 'end' : 'start'}" fill="${escapeXml(c)}">${escapeXml(p.mark)}</text>`);
      });
    });
  } else {
    const n = Math.max(1, spec.series.length);
    const bw = (slot * 0.8) / n;
    const base = spec.yLog ? B : ysc.map(0);
    cats.forEach((cat, ci) => {
      const cx = L + slot * (ci + 0.5);
      const tl = catLines[ci].map((l, k) => `<tspan x="${num(cx)}" dy="${k ? 13 : 0}">${escapeXml(l)}</tspan>`).join('');
      out.push(`<text x="${num(cx)}" y="${B + 16}" text-anchor="middle" font-size="11">${tl}</text>`);
      spec.series.forEach((s, si) => {
        const p = s.points.find((q) => String(q.x) === cat);
        const x0 = cx - slot * 0.4 + bw * si;
        if (p && finite(p.y) && (!spec.yLog || p.y > 0)) {
          const y = ysc.map(p.y);
          out.push(`<rect x="${num(x0)}" y="${num(Math.min(y, base))}" width="${num(bw * 0.92)}" height="${num(Math.abs(base - y))}" fill="${escapeXml(color(s, si))}"><title>${escapeXml(`${s.name}, ${cat}: ${formatNumber(p.y)}`)}</title></rect>`);
        } else if (p?.mark) {
          out.push(`<text x="${num(x0 + bw / 2)}" y="${B - 4}" text-anchor="middle" font-size="10" fill="${escapeXml(color(s, si))}">${escapeXml(p.mark)}</text>`);
        }
      });
    });
  }
  // axes and titles
  out.push(`<line x1="${L}" x2="${L}" y1="${T}" y2="${B}" stroke="#333"/>`);
  out.push(`<line x1="${L}" x2="${R}" y1="${B}" y2="${B}" stroke="#333"/>`);
  out.push(`<text x="${(L + R) / 2}" y="${B + 34 + extra}" text-anchor="middle" font-size="12">${escapeXml(spec.xLabel)}</text>`);
  out.push(`<text transform="translate(16,${(T + B) / 2}) rotate(-90)" text-anchor="middle" font-size="12">${escapeXml(spec.yLabel + (spec.yLog ? ' (log)' : ''))}</text>`);
  if (spec.note) out.push(`<text x="${L}" y="${H - 8}" font-size="10" fill="#555">${escapeXml(spec.note)}</text>`);
  // legend
  spec.series.forEach((s, i) => {
    const y = T + 6 + 18 * i, x = R + 14;
    out.push(`<rect x="${x}" y="${y - 6}" width="12" height="12" fill="${escapeXml(color(s, i))}"/>`);
    out.push(`<text x="${x + 18}" y="${y}" dy="0.32em" font-size="11">${escapeXml(s.name)}</text>`);
  });
  out.push('</g>');
  return out.join('\n');
}

/** A self-contained SVG document of one or more chart panels. */
export function renderSvg(specs: ChartSpec | ChartSpec[], options: RenderOptions = {}): string {
  const list = Array.isArray(specs) ? specs : [specs];
  const cols = Math.max(1, Math.min(options.columns ?? list.length, list.length));
  const w = (s: ChartSpec) => s.width ?? 520, h = (s: ChartSpec) => s.height ?? 340;
  const head = options.title ? 28 : 0;
  const colW = Array.from({ length: cols }, (_, c) => Math.max(0, ...list.filter((_, i) => i % cols === c).map(w)));
  const rows = Math.ceil(list.length / cols);
  const rowH = Array.from({ length: rows }, (_, r) => Math.max(0, ...list.slice(r * cols, r * cols + cols).map(h)));
  const W = colW.reduce((a, b) => a + b, 0), H = head + rowH.reduce((a, b) => a + b, 0);
  const body = list.map((s, i) => {
    const c = i % cols, r = Math.floor(i / cols);
    return panel(s, colW.slice(0, c).reduce((a, b) => a + b, 0), head + rowH.slice(0, r).reduce((a, b) => a + b, 0));
  });
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    options.title ? `<text x="${W / 2}" y="20" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(options.title)}</text>` : '',
    ...body,
    '</svg>',
    '',
  ].filter((l) => l !== '').join('\n') + '\n';
}
