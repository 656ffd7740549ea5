module ducktune/ollamatemplate

go 1.19
