panels = "25k 50k 100k 200k 400k 800k 1.6M 3.2M saturation"
xmin = 0.319
xmax = 2.49439e+06
workers = 1
tenant_regions = 16
