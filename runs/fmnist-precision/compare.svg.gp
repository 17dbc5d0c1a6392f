# Redraw with: gnuplot compare.svg.gp (in this folder)
set terminal svg size 1000,620 dynamic noenhanced font 'sans,13' background rgb 'white'
set output './compare.svg'
set title 'Fashion-MNIST MLP 784-256-128-10: training loss per optimizer (seed 1, batch 128)' noenhanced
set xlabel 'step (optimizer updates)' noenhanced
set ylabel 'training loss (nats; mean over the last 52 steps)' noenhanced
set logscale y
set autoscale yfix
set offsets 0, 0, graph 0.04, graph 0.04
set ytics (0.3, 0.5, 0.7, 1)
set grid xtics ytics mytics lc rgb '#dddddd'
set key top right box opaque
set border lw 1.2
plot './compare.svg.dat' index 0 using 1:2 with lines lw 2 dt 1 title 'float32' noenhanced, \
     './compare.svg.dat' index 1 using 1:2 with lines lw 2 dt 2 title 'bf16 params, f32 masters' noenhanced, \
     './compare.svg.dat' index 2 using 1:2 with lines lw 2 dt 3 title 'bf16 params, stochastic' noenhanced, \
     './compare.svg.dat' index 3 using 1:2 with lines lw 2 dt 4 title 'bf16 state' noenhanced, \
     './compare.svg.dat' index 4 using 1:2 with lines lw 2 dt 1 title 'int8 state' noenhanced
