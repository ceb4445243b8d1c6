module podtrace.invalid/testimages

go 1.19
