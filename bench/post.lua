-- wrk script: POSTs the replaced service's example payload (delete + insert).
--   wrk -t2 -c64 -d10s -s bench/post.lua http://127.0.0.1:8080/api/activities
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{"activities":[
  {"operation":"delete","table":"table1","value_to_delete":{"col_names":["a","c","e"],"col_types":["INTEGER","TEXT","TEXT"],"col_values":[3,"2019-04-28 10:24:30.183414","something"]}},
  {"operation":"insert","table":"table1","col_names":["a","b","c"],"col_types":["INTEGER","TEXT","TEXT"],"col_values":[1,"Backup and Restore","2018-03-27 11:58:28.988414"]}
]}]]
