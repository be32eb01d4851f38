return await Vessel.Shim.ShimCommand.RunAsync(args);
