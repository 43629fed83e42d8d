"""The API's resources, one router each: table, picture controls, the camera's own controls."""
