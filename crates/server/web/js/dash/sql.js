// Runs a query as the signed-in key, with the time range as `$1` and `$2` (both always sent;
// a query may use either, both or neither).

import { call } from '../api.js';

export function runQuery(sql, [from, to]) {
  return call('POST', '/v1/sql', { sql, params: [from, to] });
}

/** The query page's address for `sql` drawn as `chart`, over the range of `search`. */
export function queryLink(sql, chart, search = location.search) {
  const params = new URLSearchParams(search);
  const keep = new URLSearchParams();
  for (const key of ['from', 'to']) if (params.get(key)) keep.set(key, params.get(key));
  keep.set('sql', sql.trim());
  keep.set('chart', chart);
  return `/query?${keep}`;
}
