-- wrk script: POSTs an insert-only payload, which the apply stage applies
-- (the example payload's delete needs table1 to exist with column e).
--   wrk -t2 -c64 -d10s -s bench/insert.lua http://127.0.0.1:8080/api/activities
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{"activities":[{"operation":"insert","table":"table1","col_names":["a","b","c"],"col_types":["INTEGER","TEXT","TEXT"],"col_values":[1,"Backup and Restore","2018-03-27 11:58:28.988414"]}]}]]
