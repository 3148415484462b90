import { apiGet, ApiError, type Bill as BillDoc } from "../api";
import { useFigures } from "../figures";
import { money } from "../format";
import { t } from "../i18n";
import { localParts } from "../tz";
import { Age, type ScreenProps } from "./common";

export function Bill({ userId, home, signedOut }: ScreenProps) {
  const figures = useFigures<BillDoc | "none">(
    userId,
    `bill:${home.id}`,
    async () => {
      const p = localParts(home.timezone, Date.now());
      try {
        return await apiGet<BillDoc>("bills/draft/", { facility: home.id, month: `${p.year}-${String(p.month).padStart(2, "0")}` });
      } catch (error) {
        if (error instanceof ApiError && error.status === 400) return "none";
        throw error;
      }
    },
    signedOut,
    300_000,
  );
  const bill = figures.value;
  return (
    <section>
      <h2>{t("bill")}</h2>
      {bill === "none" && <p class="muted">{t("billNoContract")}</p>}
      {bill && bill !== "none" && (
        <div class="cards">
          <div class="card">
            <h3>{t("billSoFar")}</h3>
            <p class="big" data-testid="bill-so-far" data-value={bill.gross}>{money(bill.gross, bill.currency)}</p>
          </div>
          <div class="card">
            <h3>{t("billProjected")}</h3>
            <p class="big" data-testid="bill-projected" data-value={bill.detail.projected_gross ?? bill.gross}>{money(bill.detail.projected_gross ?? bill.gross, bill.currency)}</p>
            <p class="muted">{t("billIncludes")}</p>
          </div>
        </div>
      )}
      <Age figures={figures} />
    </section>
  );
}
