"""`make bench-load`: N concurrent sessions through one gateway process, with the simulator and
the clients in other processes; see driver.py."""
