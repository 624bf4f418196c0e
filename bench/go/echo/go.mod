module github.com/pysentry/bench/echo

go 1.24
