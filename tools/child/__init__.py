"""Scripts that run in other processes, never imported by prodloop itself: the pytest probe and the mutation
driver (in the service's interpreter, in the sandbox: standard library and pytest only) and the mutant
generator (in prodloop's interpreter, in a scratch folder, because mutmut reads its working directory)."""
