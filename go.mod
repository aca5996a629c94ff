module github.com/projector-dev/projector

go 1.26
