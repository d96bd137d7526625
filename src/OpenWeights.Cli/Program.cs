using OpenWeights.Cli;

return Cli.Start(args);
