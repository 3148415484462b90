// uPlot charts: the live sparkline and the history bars.
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

function widthOf(ref: { current: HTMLElement | null }): number {
  return Math.max(200, Math.min(ref.current?.clientWidth ?? 320, 900));
}

export function Sparkline({ points }: { points: [number, number][] }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    if (!box.current) return;
    const data: uPlot.AlignedData = [points.map((p) => p[0] / 1000), points.map((p) => p[1])];
    if (!plot.current) {
      plot.current = new uPlot(
        {
          width: widthOf(box),
          height: 90,
          legend: { show: false },
          cursor: { show: false },
          axes: [{ show: false }, { show: false }],
          scales: { x: { time: true } },
          series: [{}, { stroke: "#0f5132", width: 2, fill: "rgba(15,81,50,0.12)" }],
        },
        data,
        box.current,
      );
    } else {
      plot.current.setData(data);
    }
  }, [points]);
  useEffect(() => () => plot.current?.destroy(), []);
  return <div class="spark" ref={box} data-points={points.length} />;
}

export function Bars({
  labels,
  values,
  previous,
  format,
}: {
  labels: string[];
  values: (number | null)[];
  previous: (number | null)[];
  format: (v: number | null) => string;
}) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!box.current) return;
    box.current.replaceChildren();
    const xs = labels.map((_, i) => i);
    const bars = uPlot.paths.bars!({ size: [0.6, 40] });
    const chart = new uPlot(
      {
        width: widthOf(box),
        height: 200,
        legend: { show: false },
        scales: { x: { time: false, range: [-0.5, labels.length - 0.5] } },
        axes: [
          { values: (_u, ticks) => ticks.map((i) => labels[i] ?? ""), space: 28, size: 30 },
          { values: (_u, ticks) => ticks.map((v) => format(v)), size: 70 },
        ],
        series: [
          {},
          { stroke: "#adb5bd", fill: "rgba(173,181,189,0.5)", paths: bars, points: { show: false } },
          { stroke: "#0f5132", fill: "rgba(15,81,50,0.8)", paths: bars, points: { show: false } },
        ],
      },
      [xs, previous.map((v) => v ?? null), values.map((v) => v ?? null)] as uPlot.AlignedData,
      box.current,
    );
    return () => chart.destroy();
  }, [labels, values, previous]);
  return <div class="bars" ref={box} data-bars={values.filter((v) => v !== null).length} />;
}
