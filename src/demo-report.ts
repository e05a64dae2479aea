// demo-report.ts: the demo's report.html: one self-contained page (no external assets, no
// scripts): a metrics table, the loss curves of both stages and before / after bars drawn as
// inline SVG. Every text that reaches the page is escaped.
import type { DemoMetrics, DemoRetrieval } from './demo';

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(s: unknown): string {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const pct = (v: number | null | undefined): string => (typeof v === 'number' && Number.isFinite(v) ? `${(100 * v).toFixed(1)}%` : 'n/a');
const num = (v: number): string => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2));

interface Series {
  name: string;
  values: number[];
  colour: string;
}

/** A line chart of loss curves (one panel, x = step of each series scaled to the width). */
export function lineChart(title: string, series: Series[], width = 460, height = 220): string {
  const pad = { l: 44, r: 12, t: 26, b: 30 };
  const all = series.flatMap((s) => s.values).filter((v) => Number.isFinite(v));
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" role="img" aria-label="${escapeHtml(title)}">`];
  parts.push(`<text x="${width / 2}" y="16" text-anchor="middle" class="t">${escapeHtml(title)}</text>`);
  if (all.length === 0) {
    parts.push(`<text x="${width / 2}" y="${height / 2}" text-anchor="middle">no data</text></svg>`);
    return parts.join('');
  }
  let lo = Math.min(...all), hi = Math.max(...all);
  if (hi - lo < 1e-9) (lo -= 0.5), (hi += 0.5);
  const W = width - pad.l - pad.r, H = height - pad.t - pad.b;
  const maxN = Math.max(...series.map((s) => s.values.length));
  const y = (v: number): number => pad.t + H - ((v - lo) / (hi - lo)) * H;
  parts.push(`<rect x="${pad.l}" y="${pad.t}" width="${W}" height="${H}" fill="none" stroke="#ccc"/>`);
  for (const v of [lo, (lo + hi) / 2, hi])
    parts.push(`<text x="${pad.l - 4}" y="${y(v) + 4}" text-anchor="end" class="a">${escapeHtml(num(v))}</text>`);
  parts.push(`<text x="${pad.l}" y="${height - 10}" class="a">0</text><text x="${pad.l + W}" y="${height - 10}" text-anchor="end" class="a">${maxN} steps</text>`);
  series.forEach((s, k) => {
    const n = s.values.length;
    const pts = s.values
      .map((v, i) => (Number.isFinite(v) ? `${(pad.l + (n <= 1 ? 0 : (i / (maxN - 1)) * W)).toFixed(1)},${y(v).toFixed(1)}` : null))
      .filter((p) => p !== null)
      .join(' ');
    parts.push(`<polyline points="${pts}" fill="none" stroke="${s.colour}" stroke-width="1.5"/>`);
    parts.push(`<text x="${pad.l + W - 4}" y="${pad.t + 14 + 14 * k}" text-anchor="end" fill="${s.colour}" class="a">${escapeHtml(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

interface BarGroup {
  label: string;
  bars: { name: string; value: number; colour: string }[];
}

/** Grouped bars of fractions (0..1), each bar labelled with its percentage. */
export function barChart(title: string, groups: BarGroup[], width = 460, height = 230): string {
  const pad = { l: 36, r: 12, t: 54, b: 34 };
  const W = width - pad.l - pad.r, H = height - pad.t - pad.b;
  const parts: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" role="img" aria-label="${escapeHtml(title)}">`];
  parts.push(`<text x="${width / 2}" y="16" text-anchor="middle" class="t">${escapeHtml(title)}</text>`);
  parts.push(`<rect x="${pad.l}" y="${pad.t}" width="${W}" height="${H}" fill="none" stroke="#ccc"/>`);
  for (const v of [0, 0.5, 1]) parts.push(`<text x="${pad.l - 4}" y="${pad.t + H - v * H + 4}" text-anchor="end" class="a">${v * 100}%</text>`);
  const gw = W / Math.max(1, groups.length);
  groups.forEach((g, gi) => {
    const bw = (gw * 0.8) / Math.max(1, g.bars.length);
    g.bars.forEach((b, bi) => {
      const v = Number.isFinite(b.value) ? Math.max(0, Math.min(1, b.value)) : 0;
      const x = pad.l + gi * gw + gw * 0.1 + bi * bw;
      parts.push(`<rect x="${x.toFixed(1)}" y="${(pad.t + H - v * H).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(v * H).toFixed(1)}" fill="${b.colour}"><title>${escapeHtml(`${g.label}: ${b.name} ${pct(b.value)}`)}</title></rect>`);
      parts.push(`<text x="${(x + bw / 2 - 1).toFixed(1)}" y="${(pad.t + H - v * H - 3).toFixed(1)}" text-anchor="middle" class="v">${escapeHtml(pct(b.value))}</text>`);
    });
    parts.push(`<text x="${(pad.l + gi * gw + gw / 2).toFixed(1)}" y="${height - 14}" text-anchor="middle" class="a">${escapeHtml(g.label)}</text>`);
  });
  const legend = groups[0]?.bars ?? [];
  legend.forEach((b, i) => {
    parts.push(`<rect x="${pad.l + 8 + i * 120}" y="24" width="10" height="10" fill="${b.colour}"/><text x="${pad.l + 22 + i * 120}" y="33" class="a">${escapeHtml(b.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('');
}

const C = { before: '#9aa5b1', after: '#1f77b4', chance: '#d62728', short: '#ff7f0e', long: '#2ca02c', mntp: '#9467bd' };

function retrievalRows(name: string, r: DemoRetrieval | null): string {
  if (!r) return `<tr><td>${escapeHtml(name)}</td><td colspan="5">n/a</td></tr>`;
  const cell = (dir: 'i2t' | 't2i') =>
    (['r1', 'r5', 'r10'] as const).map((k) => `${pct(r[dir][k])} <span class="c">(${pct(r.chance[dir][k])})</span>`).join(' / ');
  return `<tr><td>${escapeHtml(name)}</td><td>${cell('i2t')}</td><td>${cell('t2i')}</td><td>${pct(r.ceilingR1.i2t)} / ${pct(r.ceilingR1.t2i)}</td><td>${r.images}</td><td>${r.captions}</td></tr>`;
}

/** The whole report page for a run's metrics. */
export function renderReport(m: DemoMetrics): string {
  const cra = m.cra;
  const title = `LLM2CLIP demo${m.quick ? ' (quick)' : ''}`;
  const charts = [
    lineChart('Stage 1a: MNTP loss (masked next-token prediction)', [{ name: 'cross-entropy', values: m.cc.mntpLosses, colour: C.mntp }]),
    lineChart('Stage 1b: caption-contrastive loss (LoRA)', [{ name: 'InfoNCE', values: m.cc.losses, colour: C.after }]),
    lineChart('Stage 2: CLIP loss (ViT + adapter)', [{ name: 'symmetric InfoNCE', values: m.clip.losses, colour: C.long }]),
    barChart('CRA of the text encoder (test captions)', cra ? [
      { label: 'CRA', bars: [{ name: 'after MNTP', value: cra.before, colour: C.before }, { name: 'after CC', value: cra.after, colour: C.after }, { name: 'chance', value: cra.chance, colour: C.chance }] },
      ...(cra.beforeAllPairs !== null && cra.afterAllPairs !== null
        ? [{ label: 'CRA all pairs', bars: [{ name: 'after MNTP', value: cra.beforeAllPairs, colour: C.before }, { name: 'after CC', value: cra.afterAllPairs, colour: C.after }] }]
        : []),
    ] : []),
    barChart('Retrieval R@1 (test images)', [
      ...(m.retrievalShort ? [{ label: 'short captions', r: m.retrievalShort }] : []),
      ...(m.retrievalLong ? [{ label: 'long captions', r: m.retrievalLong }] : []),
      { label: 'all captions', r: m.retrieval },
    ].map(({ label, r }) => ({
      label,
      bars: [
        { name: 'image→text', value: r.i2t.r1, colour: C.short },
        { name: 'text→image', value: r.t2i.r1, colour: C.long },
        { name: 'chance (t→i)', value: r.chance.t2i.r1, colour: C.chance },
      ],
    }))),
    ...(m.zeroShot ? [barChart('Zero-shot classification', [{ label: `${m.zeroShot.classes} classes`, bars: [{ name: 'accuracy', value: m.zeroShot.accuracy, colour: C.after }, { name: 'chance', value: m.zeroShot.chance, colour: C.chance }] }])] : []),
  ];
  const rows: [string, string][] = [
    ['device', m.device],
    ['wall-clock time', `${m.seconds.toFixed(1)} s`],
    ['data', `${m.data.source}: ${m.data.trainImages} training / ${m.data.testImages} test images; stage 1 on ${m.data.ccExamples} examples of ${m.data.ccSource}`],
    ['text encoder', `tiny bidirectional Llama, ${m.textModel.layers} layers × ${m.textModel.hiddenSize}, ${(m.textModel.parameters / 1e6).toFixed(2)} M parameters, BPE ${m.tokenizer.vocabSize} tokens`],
    ['stage 1', `MNTP ${m.cc.mntpSteps} steps, caption-contrastive LoRA ${m.cc.steps} steps × ${m.cc.batchSize} pairs (${m.cc.seconds.toFixed(1)} s)`],
    ['stage 2', `tiny ViT at ${m.clip.imageSize} px + adapter, ${m.clip.steps} steps × ${m.clip.batchSize} images (${m.clip.seconds.toFixed(1)} s), logit scale ${m.clip.logitScale.toFixed(1)}`],
    ['CRA after MNTP → after CC', cra ? `${pct(cra.before)} → ${pct(cra.after)} (chance ${pct(cra.chance)}, ${cra.images} test images)` : 'n/a (no test image has two captions)'],
    ['zero-shot accuracy', m.zeroShot ? `${pct(m.zeroShot.accuracy)} (chance ${pct(m.zeroShot.chance)}; ${m.zeroShot.images} images, ${m.zeroShot.classes} classes, prompt "${m.zeroShot.prompt}")` : 'n/a (no classes/ folder)'],
  ];
  const css = `body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}
table{border-collapse:collapse;margin:12px 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.c{color:#888}.charts{display:flex;flex-wrap:wrap;gap:16px}
svg text{font:11px system-ui,sans-serif;fill:#333}svg text.t{font-weight:600;font-size:12px}svg text.v{font-size:10px}`;
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title><style>${css}</style></head>
<body>
<h1>${escapeHtml(title)}</h1>
<p>Stage 1 turns a small language model into a caption encoder (masked next-token prediction, then caption-contrastive
fine-tuning with LoRA); stage 2 freezes it, caches its caption features and trains a vision transformer and a text adapter
with the CLIP loss. Chance levels are in grey or red beside each figure.</p>
<table>${rows.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`).join('\n')}</table>
<h2>Retrieval on the test images</h2>
<table><tr><th>captions</th><th>image→text R@1 / 5 / 10 (chance)</th><th>text→image R@1 / 5 / 10 (chance)</th><th>best possible R@1 i→t / t→i</th><th>images</th><th>captions</th></tr>
${retrievalRows('short', m.retrievalShort)}
${retrievalRows('long', m.retrievalLong)}
${retrievalRows('all', m.retrieval)}
</table>
<p class="c">Short captions name only the main object, so several test images share each one; the best possible R@1
(any model) is then far below 100%: that is the information the long captions add.</p>
<div class="charts">${charts.join('\n')}</div>
<h2>Stages</h2>
<table><tr><th>stage</th><th>seconds</th></tr>${m.stages.map((s) => `<tr><td>${escapeHtml(s.name)}</td><td>${s.seconds.toFixed(1)}</td></tr>`).join('')}</table>
<p class="c">metrics.json holds every figure; cc/ and clip/ the models (Hugging Face / PEFT formats) and logs.</p>
</body></html>
`;
}
