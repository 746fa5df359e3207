/**
 * Draws the throughput chart: one panel per workload, bars grouped by
 * concurrency, one colour per setup, a whisker for the range of the
 * rounds. Written as SVG by hand, then turned into PNG by rsvg-convert
 * (Debian package librsvg2-bin) when it is installed.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { formatRate, type Summary } from './stats.ts';

export const RSVG_BIN = '/usr/bin/rsvg-convert';

/** One bar series of a panel. */
export interface ChartSeries {
  label: string;
  colour: string;
  /** One summary per concurrency of the panel (null: not measured). */
  values: (Summary | null)[];
}

/** One workload's panel. */
export interface ChartPanel {
  title: string;
  concurrencies: number[];
  series: ChartSeries[];
}

const PANEL_W = 560;
const PANEL_H = 400;
const COLUMNS = 3;
const PLOT = { left: 60, right: 16, top: 40, bottom: 120 };

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A round axis maximum and its tick step for values up to `max`. */
export function niceScale(max: number): { top: number; step: number } {
  if (!(max > 0)) return { top: 1, step: 0.25 };
  const rough = max / 4;
  const mag = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= rough) ?? 10 * mag;
  return { top: Math.ceil(max / step) * step, step };
}

function panelSvg(panel: ChartPanel, x0: number, y0: number): string {
  const out: string[] = [];
  const w = PANEL_W - PLOT.left - PLOT.right;
  const h = PANEL_H - PLOT.top - PLOT.bottom;
  const px = x0 + PLOT.left;
  const py = y0 + PLOT.top;
  const max = Math.max(0, ...panel.series.flatMap((s) => s.values.map((v) => (v && v.n > 0 ? v.max : 0))));
  // Headroom above the tallest whisker for its label.
  const { top, step } = niceScale(max * 1.12);
  const y = (v: number): number => py + h - (v / top) * h;

  out.push(`<text x="${x0 + PANEL_W / 2}" y="${y0 + 22}" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(panel.title)}</text>`);
  for (let t = 0; t <= top + step / 2; t += step) {
    out.push(`<line x1="${px}" x2="${px + w}" y1="${y(t)}" y2="${y(t)}" stroke="#ddd"/>`);
    out.push(`<text x="${px - 6}" y="${y(t) + 4}" text-anchor="end" font-size="11">${formatRate(t)}</text>`);
  }
  out.push(`<text x="${x0 + 14}" y="${py + h / 2}" font-size="11" transform="rotate(-90 ${x0 + 14} ${py + h / 2})" text-anchor="middle">requests/s</text>`);

  const groups = panel.concurrencies.length;
  const groupW = w / groups;
  const barW = Math.min(40, (groupW * 0.8) / Math.max(1, panel.series.length));
  panel.concurrencies.forEach((c, gi) => {
    const gx = px + gi * groupW + (groupW - barW * panel.series.length) / 2;
    panel.series.forEach((s, si) => {
      const v = s.values[gi];
      if (!v || v.n === 0) return;
      const bx = gx + si * barW;
      out.push(`<rect x="${bx + 1}" y="${y(v.median)}" width="${barW - 2}" height="${py + h - y(v.median)}" fill="${s.colour}"/>`);
      if (v.n > 1) {
        const cx = bx + barW / 2;
        out.push(`<line x1="${cx}" x2="${cx}" y1="${y(v.max)}" y2="${y(v.min)}" stroke="#222"/>`);
        out.push(`<line x1="${cx - 4}" x2="${cx + 4}" y1="${y(v.max)}" y2="${y(v.max)}" stroke="#222"/>`);
        out.push(`<line x1="${cx - 4}" x2="${cx + 4}" y1="${y(v.min)}" y2="${y(v.min)}" stroke="#222"/>`);
      }
      // Narrow bars get their label turned upright, so neighbours never overlap.
      const label = formatRate(v.median);
      const lx = bx + barW / 2;
      const ly = y(v.max) - 4;
      out.push(barW >= 30
        ? `<text x="${lx}" y="${ly}" text-anchor="middle" font-size="9">${label}</text>`
        : `<text x="${lx + 3}" y="${ly}" font-size="9" transform="rotate(-90 ${lx + 3} ${ly})">${label}</text>`);
    });
    out.push(`<text x="${px + gi * groupW + groupW / 2}" y="${py + h + 16}" text-anchor="middle" font-size="12">${c} conn${c === 1 ? '' : 's'}</text>`);
  });
  out.push(`<line x1="${px}" x2="${px + w}" y1="${py + h}" y2="${py + h}" stroke="#444"/>`);

  panel.series.forEach((s, si) => {
    const lx = x0 + PLOT.left + (si % 2) * (w / 2);
    const ly = py + h + 36 + Math.floor(si / 2) * 18;
    out.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${s.colour}"/>`);
    out.push(`<text x="${lx + 17}" y="${ly}" font-size="12">${escapeXml(s.label)}</text>`);
  });
  return out.join('\n');
}

/** The whole chart as SVG text. */
export function renderChartSvg(title: string, subtitle: string, panels: ChartPanel[]): string {
  const rows = Math.ceil(panels.length / COLUMNS);
  const width = PANEL_W * Math.min(COLUMNS, panels.length);
  const height = 60 + rows * PANEL_H;
  const body = panels.map((p, i) =>
    panelSvg(p, (i % COLUMNS) * PANEL_W, 60 + Math.floor(i / COLUMNS) * PANEL_H));
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="DejaVu Sans, sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="26" text-anchor="middle" font-size="20" font-weight="bold">${escapeXml(title)}</text>`,
    `<text x="${width / 2}" y="48" text-anchor="middle" font-size="12" fill="#444">${escapeXml(subtitle)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

/** Converts an SVG file to PNG; false (with the reason) when rsvg-convert is missing or fails. */
export function svgToPng(svgPath: string, pngPath: string): Promise<{ ok: boolean; reason: string }> {
  if (!existsSync(RSVG_BIN)) {
    return Promise.resolve({ ok: false, reason: `${RSVG_BIN} is missing (Debian package librsvg2-bin)` });
  }
  return new Promise((resolve) => {
    execFile(RSVG_BIN, ['-f', 'png', '-o', pngPath, svgPath], { timeout: 30_000 }, (err, _out, stderr) => {
      resolve(err ? { ok: false, reason: `rsvg-convert failed: ${err.message} ${stderr}` } : { ok: true, reason: '' });
    });
  });
}
