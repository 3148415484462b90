// Loading a screen's figures: from the API when online (saved for later), the saved ones when not.
import { useEffect, useState } from "preact/hooks";
import { Offline, SignedOut } from "./api";
import { saveFigures, savedFigures } from "./store";

export interface Figures<T> {
  value: T | null;
  savedAt: number | null;
  offline: boolean;
  failed: boolean;
  fresh: boolean; // loaded from the API since this screen opened (not a saved copy)
}

export function useFigures<T>(
  userId: number,
  name: string,
  load: () => Promise<T>,
  onSignedOut: () => void,
  everyMs = 0,
  deps: unknown[] = [],
): Figures<T> {
  const [state, setState] = useState<Figures<T>>(() => {
    const saved = savedFigures<T>(userId, name);
    return { value: saved?.value ?? null, savedAt: saved?.savedAt ?? null, offline: false, failed: false, fresh: false };
  });
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      try {
        const value = await load();
        if (stopped) return;
        const now = Date.now();
        saveFigures(userId, name, value, now);
        setState({ value, savedAt: now, offline: false, failed: false, fresh: true });
      } catch (error) {
        if (stopped) return;
        if (error instanceof SignedOut) {
          onSignedOut();
          return;
        }
        const saved = savedFigures<T>(userId, name);
        setState({
          value: saved?.value ?? null,
          savedAt: saved?.savedAt ?? null,
          offline: error instanceof Offline,
          failed: !(error instanceof Offline),
          fresh: false,
        });
      }
      if (everyMs && !stopped) timer = setTimeout(run, everyMs);
    };
    run();
    return () => {
      stopped = true;
      if (timer) clearTimeout(timer);
    };
  }, [userId, name, ...deps]);
  return state;
}
