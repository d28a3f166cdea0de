-- q2, selection (nexmark-flink's q2.sql, as a SELECT).
SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0;
