import type { Figures } from "../figures";
import { age } from "../format";
import { t } from "../i18n";

export interface Home {
  id: number;
  name: string;
  timezone: string;
}

export interface ScreenProps {
  userId: number;
  home: Home;
  email: string;
  emailVerified: boolean;
  signedOut: () => void;
}

/** How old the figures are; offline, since when they were saved. */
export function Age({ figures, at }: { figures: Figures<unknown>; at?: number | null }) {
  if (figures.offline || figures.failed) {
    return (
      <p class="age offline" data-testid="age">
        {figures.savedAt ? t("offline", { age: age(figures.savedAt) }) : t("offlineNoData")}
      </p>
    );
  }
  const when = at ?? figures.savedAt;
  return when ? <p class="age" data-testid="age">{t("updated", { age: age(when) })}</p> : <p class="age">{t("loading")}</p>;
}
