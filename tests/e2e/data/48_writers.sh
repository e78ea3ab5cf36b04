#!/bin/sh
# 48_writers_rate_limited: starts 8 psql sessions at once, each INSERTing rows48(s) into the foreign table w of
# database $DB under its own DateStyle / TimeZone. Prints their outputs (errors with their SQLSTATE) counted, and
# writes "SESSION EXIT_STATUS" lines to results/48_status.txt. Whether a refusal reaches a session while its
# rows are sent or at its COMMIT is timing: both contexts print as "while inserting into or committing".
rm -f results/48_session_*.txt results/48_status.txt
for s in 1 2 3 4 5 6 7 8; do
  case $s in
    1|5) o="-c DateStyle=SQL,DMY -c TimeZone=Pacific/Chatham" ;;
    2|6) o="-c DateStyle=German -c TimeZone=America/St_Johns" ;;
    3|7) o="-c IntervalStyle=sql_standard -c extra_float_digits=-15" ;;
    *) o="-c DateStyle=Postgres,YMD -c TimeZone=Asia/Kathmandu" ;;
  esac
  (
    PGOPTIONS="-c lc_messages=C $o" psql -X -d "$DB" -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -c "INSERT INTO w SELECT * FROM rows48($s)" \
      </dev/null >results/48_session_$s.txt 2>&1
    echo "$s $?" >>results/48_status.txt
  ) &
done
wait
cat results/48_session_*.txt | grep -v '^LOCATION:' | sed -E 's/retried [0-9]+ time/retried N time/; s/while (inserting into|committing the rows inserted into) foreign table/while inserting into or committing to foreign table/' | sort | uniq -c
rm -f results/48_session_*.txt
