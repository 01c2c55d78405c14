import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { preparable } from '../../src/catalog/prepared-statements.ts';

describe('which statements are prepared', () => {
  it('names statements of one level, and leaves those with a CTE or a subquery to custom plans', () => {
    for (const text of [
      'select * from "images" where "id" = $1',
      'update "images" set "status" = $1 where "id" = $2 and "status" = $3',
      'insert into "jobs" ("kind", "image_id") values ($1, $2) returning "id"',
      'delete from "jobs" where "id" = $1 and "lease_token" = $2',
      'select i.id from images i join jobs j on j.image_id = i.id where i.customer_id = $1',
    ])
      assert.equal(preparable(text), true, text);
    for (const text of [
      'with expired as (select id from jobs) update jobs j set state = $1 from expired',
      '  WITH quick as (select 1) select 2',
      'select count(*) as "n" from (select "id" from "images" where "customer_id" = $1 limit $2) as "w"',
      'select a from t where b = any(array(select c from u))',
    ])
      assert.equal(preparable(text), false, text);
  });
});
