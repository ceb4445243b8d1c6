module podtrace.dev/bench

go 1.19
