from rr_controlnet.cli import main

main()
