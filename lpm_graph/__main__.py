from lpm_graph.cli import main

main()
