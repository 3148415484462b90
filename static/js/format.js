/* Numbers, powers and times for the page's language (<html lang>), with Intl: "1.234,5 kW" in German. */
(function () {
  "use strict";
  const locale = document.documentElement.lang || "en";
  const numberFormats = new Map();

  function number(value, digits) {
    if (value === null || value === undefined || !isFinite(value)) return "–";
    const key = String(digits);
    if (!numberFormats.has(key)) {
      numberFormats.set(key, new Intl.NumberFormat(locale, { minimumFractionDigits: digits, maximumFractionDigits: digits }));
    }
    return numberFormats.get(key).format(value);
  }

  // Below 1 kW a figure reads better in W: a household at 45 W is not "0.0 kW".
  function power(kw, digits) {
    if (kw === null || kw === undefined || !isFinite(kw)) return "–";
    if (Math.abs(kw) < 1) return number(kw * 1000, 0) + " W";
    return number(kw, digits === undefined ? 1 : digits) + " kW";
  }

  // The unit as shown beside a figure: a unitless quantity (unit "1") gets none.
  function unit(u) {
    return u === "1" ? "" : u;
  }

  function dateTime(ms, timezone, options) {
    return new Intl.DateTimeFormat(locale, Object.assign({ timeZone: timezone }, options)).format(new Date(ms));
  }

  // Every time shown carries its zone.
  function stamp(ms, timezone, withDate) {
    const options = { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZoneName: "short" };
    if (withDate) Object.assign(options, { year: "numeric", month: "2-digit", day: "2-digit" });
    return dateTime(ms, timezone, options);
  }

  window.EnergyboxFormat = { locale: locale, number: number, power: power, unit: unit, dateTime: dateTime, stamp: stamp };
})();
