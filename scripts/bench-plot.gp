# SPDX-License-Identifier: LGPL-2.1-or-later
#
# scripts/bench-plot.gp: the plots of scripts/bench.sh, from the data it
# writes next to them (DIR/plot-vars.gp, latency-cdf.dat, throughput-tenants.dat):
#
#   gnuplot -e "dir='docs/bench'" [-e "fmt='png'"] scripts/bench-plot.gp
#
#   DIR/latency-cdf.svg         a latency CDF per offered load, echo and iopfd
#   DIR/latency-tail.svg        the same on a percentile axis (50, 90, 99, 99.9 ...)
#   DIR/throughput-tenants.svg  faults/s at saturation against tenants
#
# fmt='png' draws the same plots as PNG (pngcairo), for a quick look.

if (!exists("dir")) dir = "docs/bench"
if (!exists("fmt")) fmt = "svg"
load dir."/plot-vars.gp"

ext = fmt eq "png" ? ".png" : ".svg"
echo_c = "#1f77b4"
iopfd_c = "#d62728"

# ---- latency CDF, one panel per offered load ----

n = words(panels)
cols = int(ceil(sqrt(n)))
rows = (n + cols - 1) / cols
pw = 340
ph = 300
if (fmt eq "png") {
	set terminal pngcairo size cols * pw, rows * ph + 30 font "sans,9" background rgb "white"
} else {
	set terminal svg size cols * pw, rows * ph + 30 dynamic font "sans,11" background rgb "white"
}
set output dir."/latency-cdf".ext

# whole decades, the same on every panel, labelled with units
elo = int(floor(log10(xmin)))
ehi = int(ceil(log10(xmax)))
set logscale x 10
set xrange [10.0 ** elo : 10.0 ** ehi]
unit(e) = e < 0 ? sprintf("%.0fns", 10.0 ** (e + 3)) : e < 3 ? sprintf("%.0fus", 10.0 ** e) : \
	  e < 6 ? sprintf("%.0fms", 10.0 ** (e - 3)) : sprintf("%.0fs", 10.0 ** (e - 6))
# past 5 decades every other label, or they run into each other
lstep = ehi - elo > 5 ? 2 : 1
set xtics ()
do for [e = elo : ehi] {
	if ((e - elo) % lstep == 0) {
		set xtics add (unit(e) 10.0 ** e)
	} else {
		set xtics add ("" 10.0 ** e)
	}
}
set yrange [0:1]
set ytics 0.25
set grid xtics ytics lc rgb "#dddddd" lw 1
set xlabel "latency, inject to answer"
set ylabel "fraction answered within" offset 1,0
set key top left
set style line 1 lc rgb echo_c lw 2
set style line 2 lc rgb iopfd_c lw 2

set multiplot layout rows, cols title sprintf("Latency CDF per offered load (64 tenants x 16 regions, %d worker)", workers)
do for [i = 1:n] {
	k = word(panels, i)
	set title (k eq "saturation" ? "saturation (closed loop)" : k." faults/s offered")
	plot dir."/latency-cdf.dat" index 2 * (i - 1) using 1:2 with lines ls 1 title "echo", \
	     "" index 2 * (i - 1) + 1 using 1:2 with lines ls 2 title "iopfd"
}
unset multiplot
unset output

# ---- the same, the tail stretched: y = -log10(1 - F) ----

set output dir."/latency-tail".ext
set yrange [0:4]
set ytics ("0" 0, "50" log10(2), "90" 1, "99" 2, "99.9" 3, "99.99" 4)
set ylabel "percentile answered within"
set multiplot layout rows, cols title sprintf("Latency percentiles per offered load (64 tenants x 16 regions, %d worker)", workers)
tail(f) = f < 1 ? -log10(1 - f) : 1/0
do for [i = 1:n] {
	k = word(panels, i)
	set title (k eq "saturation" ? "saturation (closed loop)" : k." faults/s offered")
	plot dir."/latency-cdf.dat" index 2 * (i - 1) using 1:(tail($2)) with lines ls 1 title "echo", \
	     "" index 2 * (i - 1) + 1 using 1:(tail($2)) with lines ls 2 title "iopfd"
}
unset multiplot
unset output

# ---- throughput against tenants, at saturation ----

reset
if (fmt eq "png") {
	set terminal pngcairo size 640, 420 font "sans,9" background rgb "white"
} else {
	set terminal svg size 640, 420 dynamic font "sans,11" background rgb "white"
}
set output dir."/throughput-tenants".ext
set title sprintf("Throughput at saturation against tenants (%d regions each, %d worker)", tenant_regions, workers)
set logscale x 2
set offsets graph 0.05, graph 0.05, 0, 0
set yrange [0:*]
set xlabel "tenants"
set ylabel "faults/s (millions)"
set grid xtics ytics lc rgb "#dddddd"
set key top left
plot dir."/throughput-tenants.dat" using 1:($2 / 1e6):xtic(1) with linespoints lc rgb echo_c lw 2 pt 7 title "echo", \
     "" using 1:($3 / 1e6) with linespoints lc rgb iopfd_c lw 2 pt 5 title "iopfd"
unset output
